"""Ray Serve applications (glue only; the inference core lives in ``foundry.models.predictor``)."""
