"""The examples are documentation: they must keep running."""
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, capsys):
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_every_example_is_linked_from_the_readme():
    # The README section an example illustrates links it; an unlinked example is one nobody finds.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    unlinked = [p.name for p in EXAMPLES if f"](examples/{p.name})" not in readme]
    assert EXAMPLES and not unlinked, f"README.md links none of {unlinked}"
