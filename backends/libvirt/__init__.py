"""The libvirt driver: XML objects (config*.py), policy (designer.py), calls (driver.py, storage.py,
network.py, console.py) over one bounded, self-healing Connection (connection.py)."""
