"""The OpenStack provider: labs as Heat stacks (a package split by concern).

A lab is one Heat stack named after the learner's stack name, created from
the author's HOT template in the project the provider's credentials scope
to.  Only python-heatclient and keystoneauth1 talk to OpenStack; the one
call outside Heat (a Nova keypair, see below) goes through the same
keystoneauth1 session.

Config keys (the ``os_*`` names are those of the original hastexo XBlock;
empty strings count as unset, so a settings file may list every key):

``os_auth_url`` (required)
    Keystone URL.  A URL that does not end in ``/v3`` gets ``/v3`` appended
    (the v3 identity API is the only one used).
``os_username`` / ``os_user_id``, ``os_password``
    Password authentication.  With ``os_username``, the user's domain is
    ``os_user_domain_id`` or ``os_user_domain_name`` (default: the domain
    with id ``default``).
``os_auth_token``
    Token authentication (takes precedence over a password).
``os_application_credential_id`` or ``os_application_credential_name``, plus ``os_application_credential_secret``
    Application credential authentication (takes precedence over the two
    above).  A credential given by name also needs ``os_username`` or
    ``os_user_id``.  The credential carries its own project scope, so the
    project keys are ignored.
``os_project_id`` / ``os_project_name``
    The project the stacks live in (required for password and token
    authentication).  With ``os_project_name`` the project's domain is
    ``os_project_domain_id`` or ``os_project_domain_name`` (default: the
    domain with id ``default``).
``os_region_name``
    Region whose endpoints are used (default: whatever the catalog offers).
``os_interface``
    ``public`` (default), ``internal`` or ``admin``: which catalog endpoints.
``os_cacert``
    Path of a CA bundle to verify TLS against (default: the system's).
``os_verify``
    ``true`` (default); ``false`` disables TLS verification (a WARNING is logged).
``os_timeout``
    Seconds one HTTP request may take (default 60).  There are no retries
    here: the caller (``lifecycle.py``) retries :class:`TransientProviderError`.
``heat_endpoint``
    Use this orchestration URL instead of the catalog's, e.g. a proxy:
    ``https://proxy.example.com/v1/<project id>``.

Outputs contract.  Once a stack is ``CREATE_COMPLETE`` or ``RESUME_COMPLETE``
its template must provide these outputs:

``public_ip`` (required)
    Address the workers and the gateway reach the lab's SSH server on.
``private_key`` (required unless the worker made the key pair)
    The private key (OpenSSH or PEM text) that logs in to the lab.  With the
    block's ``stack_key_type`` the worker generates the key and passes
    ``public_key``; the output may then be absent or empty.
``password`` (optional)
    A password for the lab's user, if the template makes one.
``ssh_port`` (optional)
    The SSH port, an integer (default 22).
``vnc``, ``rdp`` (optional)
    Where the lab's desktop server listens, as the lab's SSH server sees
    it: ``host:port`` (usually ``127.0.0.1:5901``) or ``unix:/path``.  Passed
    on in ``ProviderStack.extra`` and recorded as ``Stack.desktop`` for
    ``vnc``/``rdp`` labs; the gateway reaches it through the lab's SSH.  The
    ``password`` output is the VNC (or RDP) password the gateway uses.
``reboot_on_resume`` (optional, deprecated)
    Accepted for templates written for the original hastexo XBlock and
    passed on in ``ProviderStack.extra["reboot_on_resume"]``; nothing here
    acts on it.

A template without ``public_ip`` makes :meth:`HeatProvider.get` report
``CREATE_FAILED`` with a reason naming the missing output, so that the
learner sees a template problem instead of a lab that never answers (a
missing key is reported by the lifecycle, which knows who made it).

Parameters.  Every parameter the caller passes is passed to Heat, except
``public_key`` and ``key_name``, which are passed only when the template
declares them.  When the caller passes ``public_key`` and the template
declares ``key_name``, a Nova keypair named after the stack is created (via
the compute API, through the same session) and ``key_name`` is set to it;
:meth:`HeatProvider.delete` removes the keypair again.  Nova keypairs belong
to the *user*, not the project: two providers with the same user share the
keypair namespace, which is harmless because stack names are unique.

Modules: ``config`` (keys and their validation, no OpenStack library),
``templates`` (HOT parsing), ``client`` (keystoneauth1 session, Heat
client and the error edge: the only module that imports heatclient, loaded
on the first call to a cloud), ``outputs`` (the outputs contract) and
``provider`` (the :class:`HeatProvider` operations).  Validating settings
imports none of the OpenStack libraries.

This package does not import Django or XBlock.
"""

from .provider import HeatProvider
from .templates import declared_parameters, parse_document

__all__ = ["HeatProvider", "declared_parameters", "parse_document"]
