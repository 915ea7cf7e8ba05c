"""The session cache's nftables text: the table it makes, the elements it adds and removes,
and the counters it reads back (rendering only; tests/netns/kernelcache runs it in a kernel)."""

from __future__ import annotations

import ipaddress
import pytest

from natlab.datapaths.kernelcache import nft
from natlab.engine.fastpath import FastEntry
from natlab.engine.types import Side
from natlab.errors import ConfigError

SPEC = nft.TableSpec("lab1", "out0", ("in0", "in1"), 0x4E4C)


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def out_udp() -> FastEntry:
    return FastEntry(Side.INSIDE, 17, ip("192.168.1.2"), 5000, ip("203.0.113.100"), 7000,
                     ip("203.0.113.1"), 40000, ip("203.0.113.100"), 7000, 10.0)


def in_tcp() -> FastEntry:
    return FastEntry(Side.OUTSIDE, 6, ip("203.0.113.100"), 443, ip("203.0.113.1"), 40001,
                     ip("203.0.113.100"), 443, ip("192.168.1.2"), 5001, 10.0)


def echo(outbound: bool) -> FastEntry:
    if outbound:
        return FastEntry(Side.INSIDE, 1, ip("192.168.1.2"), 77, ip("203.0.113.100"), 0,
                         ip("203.0.113.1"), 1077, ip("203.0.113.100"), 0, 10.0)
    return FastEntry(Side.OUTSIDE, 1, ip("203.0.113.100"), 0, ip("203.0.113.1"), 1077,
                     ip("203.0.113.100"), 0, ip("192.168.1.2"), 77, 10.0)


def test_the_table_is_replaced_whole_in_one_script_with_a_map_per_direction_and_protocol():
    script = nft.table_script(SPEC)
    assert script.startswith("table ip natlab_kc\ndelete table ip natlab_kc\n")
    for name in nft.SESSION_MAPS:
        assert f"map {name} {{" in script
    assert script.count("flags timeout") == 6 and "set seen { typeof meta mark; size 131072; flags dynamic,timeout;" in script
    assert 'comment "natlab:lab1"' in script


def test_hits_leave_with_natlabs_own_mark_and_the_mark_is_skipped_first():
    script = nft.table_script(SPEC)
    rules = [line.strip() for line in script.splitlines() if "map @" in line]
    assert len(rules) == 8 and all(r.endswith(("meta mark set 0x4e4c", "meta mark set 0x4e4c notrack")) for r in rules)
    for chain in ("inbound", "outbound"):
        body = script.split(f"chain {chain} {{")[1]
        assert body.splitlines()[2].strip() == "meta mark 0x4e4c return"


def test_the_hooks_run_before_the_queue_rules_in_mangle():
    script = nft.table_script(SPEC)
    assert "hook prerouting priority raw;" in script and "hook forward priority mangle - 10;" in script
    assert 'iifname != "out0" return' in script and 'iifname != { "in0", "in1" } return' in script


def test_tcp_rules_match_no_syn_fin_or_rst_and_no_rule_matches_a_fragment():
    script = nft.table_script(SPEC)
    tcp_rules = [line for line in script.splitlines() if "@out_tcp" in line or "@in_tcp" in line]
    assert tcp_rules and all("tcp flags & (fin|syn|rst) == 0" in r for r in tcp_rules)
    assert script.count("ip frag-off & 0x3fff != 0 return") == 2


def test_udp_without_a_checksum_gets_its_port_written_raw_so_the_zero_stays():
    script = nft.table_script(SPEC)
    assert "ip saddr set meta mark map @out_addr @th,0,16 set meta mark map @out_port" in script
    assert "ip daddr set meta mark map @in_addr @th,16,16 set meta mark map @in_port" in script
    raw = [line for line in script.splitlines() if "@th," in line]
    assert len(raw) == 2 and all(line.strip().startswith("udp checksum 0 ") for line in raw)
    assert script.count("udp checksum != 0 meta mark set") == 2


def test_icmp_rules_match_echo_requests_out_and_replies_in():
    script = nft.table_script(SPEC)
    assert "icmp type echo-request meta mark set ip saddr . icmp id . ip daddr map @out_icmp" in script
    assert "icmp type echo-reply meta mark set ip saddr . ip daddr . icmp id map @in_icmp" in script


@pytest.mark.parametrize("iface", ["in 0", 'x"; flush ruleset', "", "a" * 16])
def test_an_interface_name_nft_could_misread_is_refused(iface):
    with pytest.raises(ConfigError):
        nft.TableSpec("lab1", "out0", (iface,), 0x4E4C)


def test_an_install_adds_rewrites_before_sessions_in_one_script():
    script = nft.install_script([(5, out_udp(), 990), (6, in_tcp(), 500)])
    lines = script.splitlines()
    assert lines == [
        "add element ip natlab_kc out_addr { 5 : 203.0.113.1 }",
        "add element ip natlab_kc in_addr { 6 : 192.168.1.2 }",
        "add element ip natlab_kc out_port { 5 : 40000 }",
        "add element ip natlab_kc in_port { 6 : 5001 }",
        "add element ip natlab_kc out_udp { 192.168.1.2 . 5000 . 203.0.113.100 . 7000 timeout 990ms : 5 }",
        "add element ip natlab_kc in_tcp { 203.0.113.100 . 443 . 203.0.113.1 . 40001 timeout 500ms : 6 }",
    ]


def test_icmp_entries_key_on_the_identifier_and_rewrite_it():
    script = nft.install_script([(1, echo(True), 100), (2, echo(False), 100)])
    assert "add element ip natlab_kc out_id { 1 : 1077 }" in script
    assert "add element ip natlab_kc in_id { 2 : 77 }" in script
    assert "out_icmp { 192.168.1.2 . 77 . 203.0.113.100 timeout 100ms : 1 }" in script
    assert "in_icmp { 203.0.113.100 . 203.0.113.1 . 1077 timeout 100ms : 2 }" in script


def test_an_install_never_asks_for_a_timeout_below_a_millisecond():
    with pytest.raises(ValueError):
        nft.install_script([(1, out_udp(), 0)])


def test_forgetting_and_unlinking_touch_only_their_own_maps():
    assert nft.forget_script([(5, out_udp()), (7, echo(False))]).splitlines()[2:] == [
        "delete element ip natlab_kc out_addr { 5 }",
        "delete element ip natlab_kc in_addr { 7 }",
        "delete element ip natlab_kc out_port { 5 }",
        "delete element ip natlab_kc in_id { 7 }",
    ]
    assert nft.unlink_script([in_tcp()]) == \
        "delete element ip natlab_kc in_tcp { 203.0.113.100 . 443 . 203.0.113.1 . 40001 }\n"
    assert nft.unlink_script([]) == "" and nft.forget_script([]) == ""


def test_flushing_empties_every_session_map_in_one_script_and_the_rewrites_in_another():
    assert nft.flush_sessions_script().splitlines() == [f"flush map ip natlab_kc {n}" for n in nft.SESSION_MAPS] + \
        [f"flush set ip natlab_kc {n}" for n in nft.PROBE_SETS]
    assert all(f"flush map ip natlab_kc {n}" in nft.flush_data_script() for n in nft.DATA_MAPS)


LISTING = """table ip natlab_kc {
	set seen {
		typeof meta mark
		size 131072
		flags dynamic,timeout
		timeout 1d
		elements = { 0x00000007 counter packets 6 bytes 504 expires 23h59m58s664ms, 0x00000009 expires 1s,
			     0x0000000a counter packets 1 bytes 60 expires 1d }
	}
}
"""


def test_counts_and_last_hits_are_read_back_per_mark_from_the_seen_listing():
    seen = nft.parse_seen(LISTING)
    assert set(seen) == {7, 10}  # 9 was added by hand, never hit
    assert seen[7][:2] == (6, 504) and seen[7][2] == pytest.approx(1.336)
    assert seen[10] == (1, 60, 0.0)


def test_an_empty_set_or_an_empty_answer_reads_as_nothing_counted():
    assert nft.parse_seen("table ip natlab_kc {\n\tset seen {\n\t}\n}\n") == {} and nft.parse_seen("") == {}


def test_nft_durations_read_as_seconds():
    assert nft.duration("1d2h3m4s5ms") == pytest.approx(86400 + 7200 + 180 + 4.005)
    assert nft.duration("500ms") == pytest.approx(0.5)


def test_every_hit_is_counted_in_seen_before_any_rewrite():
    for line in nft.table_script(SPEC).splitlines():
        if " map @" in line and "update @seen" in line:
            assert line.index("update @seen { meta mark counter }") < line.index(" set meta mark map @")


def test_forgetting_a_mark_empties_its_seen_element_whether_or_not_it_was_hit():
    lines = nft.forget_script([(5, out_udp())]).splitlines()
    assert lines[:2] == ["add element ip natlab_kc seen { 5 timeout 1s }", "delete element ip natlab_kc seen { 5 }"]


def test_a_probe_sends_one_packet_of_its_key_out_of_the_chain_before_the_cache_rules():
    script = nft.table_script(SPEC)
    outbound = script.split("chain outbound {")[1]
    probe = "ip saddr . udp sport . ip daddr . udp dport @probe_out_udp delete @probe_out_udp " \
            "{ ip saddr . udp sport . ip daddr . udp dport } return"
    assert probe in outbound and outbound.index(probe) < outbound.index("map @out_udp")
    assert nft.probe_script([(out_udp(), 240)]) == \
        "add element ip natlab_kc probe_out_udp { 192.168.1.2 . 5000 . 203.0.113.100 . 7000 timeout 240ms }\n"


def test_a_renewal_replaces_the_session_element_in_one_script_keeping_the_mark():
    assert nft.renew_script([(5, out_udp(), 990)]).splitlines() == [
        "delete element ip natlab_kc out_udp { 192.168.1.2 . 5000 . 203.0.113.100 . 7000 }",
        "add element ip natlab_kc out_udp { 192.168.1.2 . 5000 . 203.0.113.100 . 7000 timeout 990ms : 5 }",
    ]
