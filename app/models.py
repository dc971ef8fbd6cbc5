"""Every model module, imported so `Base.metadata` is complete (migrations, drift checks, grants)."""

from app.access import models as _access  # noqa: F401
from app.accounts import models as _accounts  # noqa: F401
from app.audit import models as _audit  # noqa: F401
from app.callers import models as _callers  # noqa: F401
from app.calls import models as _calls  # noqa: F401
from app.cases import models as _cases  # noqa: F401
from app.chats import models as _chats  # noqa: F401
from app.contacts import models as _contacts  # noqa: F401
from app.db.base import Base
from app.jobs import models as _jobs  # noqa: F401
from app.keys import models as _keys  # noqa: F401
from app.referrals import models as _referrals  # noqa: F401
from app.reports import models as _reports  # noqa: F401
from app.retention import models as _retention  # noqa: F401
from app.rights import models as _rights  # noqa: F401
from app.routing import models as _routing  # noqa: F401
from app.volunteers import models as _volunteers  # noqa: F401

metadata = Base.metadata
