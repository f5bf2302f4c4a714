"""Weight-sharing supernets: elastic layers, the Supernet base, training and evaluation."""
