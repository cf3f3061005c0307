"""QR-DQN (Dabney et al., AAAI 2018) on the wdist quantile Huber loss, for Atari and gymnasium."""
