from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]
# Accepted exactly as typed: no trimming. The cap stops absurd inputs before hashing.
Password = Annotated[str, Field(min_length=1, max_length=1024)]
TotpCode = Annotated[str, StringConstraints(min_length=6, max_length=16)]
Token = Annotated[str, StringConstraints(min_length=16, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    password: Password
    totp: TotpCode


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Token
    password: Password | None = None


class EnrollConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Token
    totp: TotpCode


class StepUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    totp: TotpCode


class MeOut(BaseModel):
    id: str
    email: str
    name: str
    roles: list[str]
    languages: list[str]
    timezone: str
    csrf_token: str
    session_expires_at: str


class EnrollOut(BaseModel):
    totp_secret: str
    otpauth_uri: str
    qr_svg: str


class StatusOut(BaseModel):
    status: str
