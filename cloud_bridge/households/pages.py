"""The page a phone opens from a household's code (一户一码, `/H/{token}`): who to call for that
household's building, its butlers' duty phones and the community's.

The code hangs at a door, where anyone can scan it, so the page says nothing about who lives
there: no name, no room, no resident's phone, not even the household's id (it may hold the
room). What it shows is what the building's notice board shows.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from aiohttp import web

from cloud_bridge.localtime import local
from cloud_bridge.stalls.public import (
    Lang,
    add_lost_pages,
    check_code,
    language,
    message_page,
    page,
)
from mashang.registry import Contact, Household, Registry

TEXT: dict[Lang, dict[str, str]] = {
    "zh": {
        "title": "住户码", "heading": "{building} · 住户码",
        "about": "这是{place}一户住户的门牌码。住户需要帮助时，请按家中的呼叫按钮，"
                 "或拨打下面的电话。",
        "primary": "楼栋管家", "backup": "备班管家", "duty": "社区值班电话",
        "privacy": "本页不显示住户的任何个人信息。",
        "none": "暂无登记的电话，请联系社区居委会。",
        "invalid": "无效的住户码",
        "invalid_why": "这个二维码不是本社区签发的住户码，或已损坏。",
        "revoked": "住户码已作废", "revoked_why": "这个住户码已作废，请以社区新发的码为准。",
        "expired": "住户码已过期", "expired_why": "这个住户码已过期，请联系社区更换。",
        "unknown": "未登记的住户码", "unknown_why": "这个住户码是真的，但住户已不在登记名单中。",
        "community": "本社区",
    },
    "en": {
        "title": "Household code", "heading": "{building} · household code",
        "about": "This is the door code of a household in {place}. If the resident needs help, "
                 "press the call button at home, or call one of the numbers below.",
        "primary": "Building butler", "backup": "Backup butler", "duty": "Community duty phone",
        "privacy": "This page shows nothing about the residents.",
        "none": "No phone is registered: ask the residents' committee.",
        "invalid": "Not a valid household code",
        "invalid_why": "This QR code is not a household code issued by this community, or it "
                       "is damaged.",
        "revoked": "Household code withdrawn",
        "revoked_why": "This household code has been withdrawn: the community issued a new one.",
        "expired": "Household code expired",
        "expired_why": "This household code has expired: ask the community for a new one.",
        "unknown": "Unregistered household code",
        "unknown_why": "This household code is genuine, but the household is no longer "
                       "registered.",
        "community": "this community",
    },
}
# An invalid code is not a page here; a withdrawn or expired one was, and is gone.
STATUS_CODES = {"invalid": 404, "unknown": 404, "revoked": 410, "expired": 410}


class HouseholdPages:
    def __init__(self, registry: Callable[[], Registry], *, zone: ZoneInfo,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._zone = zone
        self._clock = clock

    async def page(self, request: web.Request) -> web.Response:
        lang, registry = language(request), self._registry()
        token = request.match_info.get("token", "").upper()
        today = local(self._clock(), self._zone).date()
        checked = check_code(registry, "household", token, today)
        household = registry.household(checked.subject_id) if checked.subject_id else None
        t, path = TEXT[lang], f"/H/{token}"
        if checked.status == "valid" and household is not None:
            return page(lang, t["title"], render(registry, household, t), switch_to=path)
        which = "unknown" if checked.status == "valid" else checked.status
        duty = contacts([(t["duty"], registry.community.duty_contact)], t)
        return message_page(lang, t[which], t[f"{which}_why"], switch_to=path,
                            status=STATUS_CODES[which], extra=duty)


def render(registry: Registry, household: Household, t: Mapping[str, str]) -> str:
    building = registry.building(household.building) if household.building else None
    community = registry.community
    place = " ".join(filter(None, [community.name, building.name if building else None]))
    butlers = [(t["primary"], registry.butler(building.primary_butler if building else None)),
               (t["backup"], registry.butler(building.backup_butler if building else None))]
    heading = t["heading"].format(building=building.name if building else community.name)
    return (f"<h1>{html.escape(heading)}</h1>"
            f"<p>{html.escape(t['about'].format(place=place or t['community']))}</p>"
            f"{contacts([*butlers, (t['duty'], community.duty_contact)], t)}"
            f'<p class="hint">{html.escape(t["privacy"])}</p>')


def contacts(entries: list[tuple[str, Contact | None]], t: Mapping[str, str]) -> str:
    """Each role with a phone: the role, the name, the number as a link that dials."""
    rows = "".join(
        f"<dt>{html.escape(role)}</dt><dd>{html.escape(contact.name)} "
        f'<a class="tel" href="tel:{html.escape(contact.phone)}">{html.escape(contact.phone)}</a>'
        "</dd>"
        for role, contact in entries if contact is not None and contact.phone
    )
    return f'<dl id="contacts">{rows}</dl>' if rows else f"<p>{html.escape(t['none'])}</p>"


def add_household_routes(app: web.Application, pages: HouseholdPages) -> None:
    add_lost_pages(app, "H")
    for letter in ("H", "h"):
        app.router.add_get(f"/{letter}/", pages.page)  # a QR cut short: not a valid code
        app.router.add_get(f"/{letter}/{{token}}", pages.page)
