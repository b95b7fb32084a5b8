"""One module per command, commands/cmd_<name>.py: argparse only (`add_arguments`), then `run(args)` calls
the Python API of the packages below and prints. cli.py dispatches to them."""
