"""This machine, as a laptop with one consumer GPU (the seed's RTX 4060 setup).

    sudo .venv/bin/pyinfra inventories/laptop.py deploy.py

pyinfra's @local connector runs the deploy here, without SSH; it needs root.
"""

laptop = ["@local"]
