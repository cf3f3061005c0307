"""WGAN image generator on the ``wdist`` critic: weight clipping, gradient penalty, spectral norm.

Read top to bottom: ``config`` (every hyper-parameter, per-method paper defaults), ``data`` (toy
sets, MNIST, digits, image folders, ``.npz``), ``models`` (MLP, DCGAN 32/64, WGAN-GP ResNet 32),
``trainer`` (the loop), ``evaluate`` (exact W1, Fréchet distance), ``plots``, ``cli``.
"""
