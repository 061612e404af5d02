"""An Ansible YAML inventory, as pyinfra reads it:

    VLLM_FLEET_ANSIBLE_INVENTORY=inventories/hosts.yml pyinfra inventories/ansible.py deploy.py

(`vllm-fleet` commands take the YAML file itself and set this for you.) Its groups are the
YAML's groups; group_data/ applies as for any inventory. See vllm_fleet/ansible_inventory.py.
"""

import os

from vllm_fleet.ansible_inventory import PATH_VARIABLE, load

globals().update(load(os.environ.get(PATH_VARIABLE, "inventories/hosts.yml")))
