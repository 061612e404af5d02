import sys

from vllm_fleet.cli import main

if __name__ == "__main__":
    sys.exit(main())
