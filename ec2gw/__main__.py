"""`python -m ec2gw` is the `ec2gw` command."""

from ec2gw.cli.main import main

main()
