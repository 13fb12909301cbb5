"""Container tests (see conftest.py): a package, so that its conftest does not shadow the
suite's own `conftest` module that other tests import from."""
