"""ThingsBoard's SNMP transport: the platform polls agents (spec 1.4). No ray, no actors.

``config`` parses the profile's and the device's transport configurations; ``SnmpPoller`` polls the
devices it is given through an ``SnmpClient`` (pysnmp's asyncio API) and talks to the platform
through a ``TransportService``.
"""

from thingsray.transports.snmp.client import SnmpAgent, SnmpClient, SnmpFailure, SnmpRequestError, SnmpResponse
from thingsray.transports.snmp.config import (
    AuthenticationProtocol,
    CommunicationSpec,
    DataType,
    PrivacyProtocol,
    SnmpCommunicationConfig,
    SnmpConfigError,
    SnmpDeviceConfig,
    SnmpMapping,
    SnmpMethod,
    SnmpProfileConfig,
    SnmpProtocolVersion,
)
from thingsray.transports.snmp.poller import SnmpDevice, SnmpPoller, SnmpStats
from thingsray.transports.snmp.session import SessionState, SnmpSession

__all__ = ["AuthenticationProtocol", "CommunicationSpec", "DataType", "PrivacyProtocol", "SessionState", "SnmpAgent",
           "SnmpClient", "SnmpCommunicationConfig", "SnmpConfigError", "SnmpDevice", "SnmpDeviceConfig",
           "SnmpFailure", "SnmpMapping", "SnmpMethod", "SnmpPoller", "SnmpProfileConfig", "SnmpProtocolVersion",
           "SnmpRequestError", "SnmpResponse", "SnmpSession", "SnmpStats"]
