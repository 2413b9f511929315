"""The GAN itself, free of any distribution: models (plain ``nn.Module``s), losses, the local
optimizers' arithmetic and the flat parameter buffer."""
