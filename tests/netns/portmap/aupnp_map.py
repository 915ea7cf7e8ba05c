"""async-upnp-client (PyPI) as a user runs it: SSDP search, the device's description, AddPortMapping /
DeletePortMapping through its IGD profile. Run in a lab host: python aupnp_map.py add|delete CLIENT PORT PROTO."""

import asyncio
import datetime
import json
import sys
from ipaddress import IPv4Address

from async_upnp_client.aiohttp import AiohttpRequester
from async_upnp_client.client_factory import UpnpFactory
from async_upnp_client.profiles.igd import IgdDevice
from async_upnp_client.search import async_search

IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"


async def main(action: str, client: str, port: int, proto: str) -> dict:
    locations: list[str] = []

    async def found(headers) -> None:
        locations.append(headers["LOCATION"])

    await async_search(found, timeout=2, search_target=IGD, source=(client, 0))
    if not locations:
        return {"ok": False, "error": "no IGD answered the search"}
    requester = AiohttpRequester()
    device = await UpnpFactory(requester).async_create_device(locations[0])
    igd = IgdDevice(device, None)
    wildcard = IPv4Address("0.0.0.0")
    if action == "add":
        await igd.async_add_port_mapping(wildcard, port, proto, port, IPv4Address(client), True,
                                         "async-upnp-client", datetime.timedelta(seconds=3600))
    else:
        await igd.async_delete_port_mapping(wildcard, port, proto)
    external = await igd.async_get_external_ip_address()
    entry = await igd.async_get_specific_port_mapping_entry(wildcard, port, proto) if action == "add" else None
    return {"ok": True, "location": locations[0], "external": external,
            "internal_client": str(entry.internal_client) if entry else None}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))))
