"""Load the regiondrill pytest plugin; everything else lives in harness.plugin."""

pytest_plugins = ["harness.plugin"]
