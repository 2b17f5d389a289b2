"""The generators and their parts."""
