"""The simulated ACK cloud: clusters, node pools, ECS instances, nodes, pods and PDBs kept in
the database, with its own clock, fault rules, reset and state import/export.

``cloud.SimCloud`` implements the cloud port (``clustertasks.providers.base``); nothing
below this package (engine, operations, task services) imports it.
"""
