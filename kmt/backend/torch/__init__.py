"""kmt on the torch backend: `ops` (fast paths of model code) and `training` (the training step, several devices)."""
