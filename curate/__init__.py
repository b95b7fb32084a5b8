"""Dataset I/O for img2dataset folders, demo datasets, memorization scoring, flagging and reports."""
