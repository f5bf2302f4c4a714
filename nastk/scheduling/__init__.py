"""Multi-fidelity scheduling: how far each candidate trains, and which continue (successive
halving, ASHA, Hyperband), independent of the strategy that proposes and of the executor that
runs the candidates."""
