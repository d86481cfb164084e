"""ec2gw: a self-hosted cloud answering the EC2 Query API and an S3-compatible store (Cumulus)."""

__version__ = "0.1.0"
