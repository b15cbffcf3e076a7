"""``taosr1`` subcommands, one module per stage (see ``taosr1_verl.cli``)."""
