"""``python -m cnnspec`` (also what ``torchrun -m cnnspec train ...`` runs)."""

from .cli import main

if __name__ == "__main__":
    main()
