"""A household's door code opened on a phone (`/H/{token}`, PROTOCOL §5), on a real central:
the page names the building and who to call, its butlers' duty phones and the community's,
and nothing about who lives there. A code that is forged, expired, withdrawn or unknown gets
a page in Chinese saying so, with a 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.phone_pages import get, phone_registry, start_phone_central, token
from tests.helpers.support import Central

pytestmark = [pytest.mark.system, pytest.mark.central]

HOUSEHOLD = f"/H/{token('household', 'H-3-1201')}"


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, module_database: str | None,
            ) -> Iterator[Central]:
    folder = tmp_path_factory.mktemp("household-central")
    central = start_phone_central(folder, database=module_database)
    yield central
    central.kill()


def test_a_door_code_shows_the_buildings_butlers_and_the_community(central) -> None:
    answer = get(central, HOUSEHOLD)
    assert answer.status == 200
    page = answer.body
    assert '<html lang="zh-CN">' in page and 'name="viewport"' in page
    assert "3号楼" in page and "康城社区" in page
    assert "楼栋管家" in page and "王管家" in page and 'href="tel:13800000001"' in page
    assert "备班管家" in page and "李管家" in page and 'href="tel:13800000002"' in page
    assert "社区值班电话" in page and 'href="tel:0477-8590000"' in page
    assert "赵管家" not in page  # another building's butler


def test_the_page_holds_no_residents_data(central) -> None:
    page = get(central, HOUSEHOLD).body + get(central, HOUSEHOLD, language="en").body
    registry = phone_registry()
    residents = [button["resident"] for button in registry["buttons"]]
    private = [value for resident in residents for key, value in resident.items()
               if key in ("name", "phone", "room", "household")]
    private += [household["id"] for household in registry["households"]]
    assert private and [value for value in private if value in page] == []


def test_english_when_the_browser_asks_for_it_first(central) -> None:
    page = get(central, HOUSEHOLD, language="en-GB,en;q=0.8").body
    assert "Building butler" in page and "Community duty phone" in page


def test_codes_that_are_not_a_households_page_say_so_in_chinese(central) -> None:
    cases = {
        "forged": (HOUSEHOLD[:-8] + "AAAAAAAA", 404, "无效的住户码"),
        "a stall's token": (f"/H/{token('stall', 'ST-001')}", 404, "无效的住户码"),
        "expired": (f"/H/{token('household', 'H-3-1201', days=-2)}", 410, "住户码已过期"),
        "withdrawn": (f"/H/{token('household', 'H-3-0302', generation=1)}", 410,
                      "住户码已作废"),
        "denied": (f"/H/{token('household', 'H-3-0999')}", 410, "住户码已作废"),
        "unregistered": (f"/H/{token('household', 'H-9-0101')}", 404, "未登记的住户码"),
    }
    for name, (path, status, heading) in cases.items():
        answer = get(central, path)
        assert (answer.status, heading in answer.body) == (status, True), name
        assert "3号楼" not in answer.body and "王管家" not in answer.body, name
        assert 'href="tel:0477-8590000"' in answer.body, name  # still someone to call
