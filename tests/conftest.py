pytest_plugins = ["herald_testkit.fixtures"]
