"""herald import-butler and herald render: move a Butler site to Herald and check its templates."""
