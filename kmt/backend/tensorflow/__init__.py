"""kmt on the tensorflow backend: `ops` (fast paths of model code) and `training` (the training step, several devices)."""
