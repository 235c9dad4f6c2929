"""``python -m webhook_kit.cli``: the ``webhook-kit`` command."""

from . import main

if __name__ == "__main__":
    main()
