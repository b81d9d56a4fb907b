#!/usr/bin/env python3
"""Writes a deterministic set of KOS facts (kos.billing envelopes, one JSON per line):
8 products from 2 operators and N lines (customer CUSTnnnn owns line 010-0000-nnnn).

Used by the command-side benchmark, which needs thousands of distinct lines (imported
with `command-service load-facts`), and it made command-service's test fixture
`tests/fixtures/kos-facts.jsonl` (published on the test's kos.billing topic). The demo
stack's data comes from kos-mock (`kos-mock seed-demo`), with the same products and lines.
Usage: generate_facts.py [--lines N] > facts.jsonl
"""
import argparse
import json
import uuid

NAMESPACE = uuid.UUID("6a0e54f1-8b1f-4c83-9d7c-2f4e1b7ab001")
CORRELATION = "00000000-0000-4000-8000-000000000001"

PRODUCTS = [
    # code, name, operator, fee (won), data MB (None = unlimited), voice min, sms, on sale
    ("5G-BASIC-001", "5G 베이직", "KT", 55000, 10240, 300, 300, True),
    ("5G-STANDARD-001", "5G 스탠다드", "KT", 69000, 51200, None, None, True),
    ("5G-PREMIUM-001", "5G 프리미엄", "KT", 89000, None, None, None, True),
    ("LTE-SLIM-001", "LTE 슬림 (판매 종료)", "KT", 33000, 3072, 200, 100, False),
    ("5G-LITE-002", "5G 라이트", "LGU", 49000, 8192, 300, 300, True),
    ("5G-STANDARD-002", "5G 스탠다드 플러스", "LGU", 65000, 40960, None, None, True),
    ("5G-PREMIUM-002", "5G 프리미엄 플러스", "LGU", 95000, None, None, None, True),
    ("LTE-DATA-002", "LTE 데이터 (판매 종료)", "LGU", 39000, 6144, None, None, False),
]

SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
GIVEN = ["민준", "서연", "도윤", "하은", "시우", "지유", "예준", "서윤", "주원", "지아"]


def envelope(event_type, aggregate_id, payload):
    event_id = uuid.uuid5(NAMESPACE, f"KosFact/{event_type}/{aggregate_id}/1")
    return {
        "event_id": str(event_id),
        "event_type": event_type,
        "event_version": 1,
        "aggregate_id": aggregate_id,
        "sequence": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "correlation_id": CORRELATION,
        "causation_id": str(event_id),
        "payload": payload,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100)
    args = parser.parse_args()
    for code, name, operator, fee, data, voice, sms, on_sale in PRODUCTS:
        print(json.dumps(envelope("ProductPublished", code, {
            "product_code": code, "name": name, "operator": operator, "monthly_fee": fee,
            "data_mb": data, "voice_minutes": voice, "sms_count": sms, "on_sale": on_sale,
        }), ensure_ascii=False))
    for n in range(1, args.lines + 1):
        operator = "KT" if n % 2 else "LGU"
        plans = ["5G-BASIC-001", "5G-STANDARD-001"] if operator == "KT" else ["5G-LITE-002", "5G-STANDARD-002"]
        line = f"010-{n // 10000:04d}-{n % 10000:04d}"
        started = f"{2024 + n % 2}-{1 + n % 12:02d}-01"
        ends = f"{2026 + n % 2}-{1 + n % 12:02d}-01"
        print(json.dumps(envelope("LineRegistered", line, {
            "line_number": line,
            "customer_id": f"CUST{n:04d}" if n < 10000 else f"CUST{n}",
            "customer_name": SURNAMES[n % 10] + GIVEN[(n // 10) % 10],
            "operator": operator,
            "status": "SUSPENDED" if n % 25 == 0 else "ACTIVE",
            "product_code": plans[n % 2],
            "contract": {"commitment_months": 24, "started_on": started, "ends_on": ends},
        }), ensure_ascii=False))


if __name__ == "__main__":
    main()
