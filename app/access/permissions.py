"""Permissions as types: routes declare what they need with `require(Permission.…)`.

Roles map to permissions here and nowhere else. Object-level checks (is this case assigned to
this volunteer?) stay in the policy and the broker; these gate whole routes.
"""

from __future__ import annotations

from enum import StrEnum

from app.accounts.models import Role


class Permission(StrEnum):
    signed_in = "signed_in"  # any active staff member (their own profile, logout, step-up)
    cases_read = "cases_read"  # list/detail of cases the policy lets them see
    cases_write = "cases_write"  # notes, referrals, intake fields, status (policy decides which cases)
    cases_assign = "cases_assign"
    break_glass = "break_glass"
    break_glass_review = "break_glass_review"
    audit_read = "audit_read"
    audit_export = "audit_export"
    audit_verify = "audit_verify"
    users_read = "users_read"
    users_manage = "users_manage"
    availability = "availability"  # own presence and phone verification (volunteers take contacts)
    schedule_read = "schedule_read"  # own shifts; all shifts with schedule_manage
    schedule_manage = "schedule_manage"  # set anyone's shifts and date overrides
    on_call_read = "on_call_read"  # who is on call now, with live presence
    rights_read = "rights_read"  # know-your-rights texts, reviewed or not, and their staleness
    rights_manage = "rights_manage"  # write new versions and record reviews (admins)
    retention_manage = "retention_manage"  # legal holds and caller erasure (supervisors; two for erasure)
    directory_read = "directory_read"  # search the referral directory
    directory_manage = "directory_manage"  # add, change, verify and deactivate organisations (admins)


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.volunteer: frozenset(
        {
            Permission.signed_in,
            Permission.cases_read,
            Permission.cases_write,
            Permission.availability,
            Permission.schedule_read,
            Permission.rights_read,
            Permission.directory_read,
        }
    ),
    Role.supervisor: frozenset(
        {
            Permission.signed_in,
            Permission.cases_read,
            Permission.cases_write,
            Permission.cases_assign,
            Permission.break_glass,
            Permission.break_glass_review,
            Permission.audit_read,
            Permission.audit_export,
            Permission.audit_verify,
            Permission.users_read,
            Permission.schedule_read,
            Permission.schedule_manage,
            Permission.on_call_read,
            Permission.rights_read,
            Permission.retention_manage,
            Permission.directory_read,
        }
    ),
    Role.admin: frozenset(
        {
            Permission.signed_in,
            Permission.users_read,
            Permission.users_manage,
            Permission.schedule_read,
            Permission.schedule_manage,
            Permission.rights_read,
            Permission.rights_manage,
            Permission.directory_read,
            Permission.directory_manage,
        }
    ),
}


def permissions_of(roles: frozenset[Role]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)
