"""The model trainer's parts: the transaction simulator, its features, the creditcard.csv reader, the
time split, the booster and the files the Node side reads. scripts/train_model.py ties them together."""
