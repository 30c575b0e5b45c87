"""The incident forwarder's destinations, one module each."""
