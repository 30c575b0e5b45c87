"""Herald's Qlik Sense stand-in: the QRS API over HTTPS with client certificates, and the
scheduler's UDP datagrams. See ``server.QlikSim`` (Python) and ``cli`` (``herald qlik-sim``)."""

from herald_qlik_sim.certs import CertPaths, ensure_certs
from herald_qlik_sim.emitter import Datagram
from herald_qlik_sim.faults import Call, CallLog, Faults
from herald_qlik_sim.server import Emission, QlikSim

__all__ = [
    "Call",
    "CallLog",
    "CertPaths",
    "Datagram",
    "Emission",
    "Faults",
    "QlikSim",
    "ensure_certs",
]
