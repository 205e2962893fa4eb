"""AWS side of the harness: CloudFormation templates and stacks, and boto3 helpers."""
