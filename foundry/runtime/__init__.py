"""Ray plumbing every Foundry process shares: connecting with token auth, submitting jobs through the Jobs API,
retrying work that lost a node, and a working directory that cannot vanish under a driver."""
