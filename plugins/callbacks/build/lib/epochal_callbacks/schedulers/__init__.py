"""LR scheduling callbacks: ``torch`` (any torch.optim.lr_scheduler) and ``keras`` (epoch rules)."""
