"""``state_digest``: how a resumed training run proves it restored the checkpoint (the restart test in
tests/integration/test_train.py compares the digests a worker records at the restore)."""

from __future__ import annotations

import torch

from foundry.train.loop import state_digest


def _trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()
    return net, opt


def test_a_restored_model_and_optimizer_digest_like_the_checkpoint():
    net, opt = _trained()
    saved_weights = {k: v.clone() for k, v in net.state_dict().items()}
    saved_optimizer = opt.state_dict()

    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.01)
    # Not restored: a fresh model at "the right epoch" digests differently, weights and optimizer alike.
    assert state_digest(fresh.state_dict()) != state_digest(saved_weights)
    assert state_digest(fresh_opt.state_dict()) != state_digest(saved_optimizer)

    fresh.load_state_dict(saved_weights)
    fresh_opt.load_state_dict(saved_optimizer)
    assert state_digest(fresh.state_dict()) == state_digest(saved_weights)
    assert state_digest(fresh_opt.state_dict()) == state_digest(saved_optimizer)


def test_one_changed_value_changes_the_digest():
    net, opt = _trained()
    before = state_digest(opt.state_dict())
    state = opt.state_dict()
    state["state"][0]["exp_avg"][0, 0] += 1e-6  # one moment entry
    assert state_digest(state) != before
    state = opt.state_dict()
    state["param_groups"][0]["lr"] = 0.02
    assert state_digest(state) != before
