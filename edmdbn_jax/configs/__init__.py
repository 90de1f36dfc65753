"""ml_collections config files (`get_config(arg)`), big_vision style."""
