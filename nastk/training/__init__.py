"""Training: the shared step loop, the supernet trainer, distillation, Self-KD, precision,
pretrained initialisation and data-parallel groups."""
