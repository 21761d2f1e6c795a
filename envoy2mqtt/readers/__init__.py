"""What the bridge reads from an Envoy, endpoint by endpoint: the readers, and the planner built on them.

Data flows one way: Envoy HTTP (`envoy.client`, HTTP and authentication only) → **readers** (this
package: which endpoints exist on this Envoy, which of them each cadence needs and how fresh) →
normalizers (`normalize/`) → readings (`model`) → counters → announcer / publisher.

- `readers.catalog`: one `Reader` per endpoint, grouped by family (production, CT meters, inverters,
  inventory, ensemble and batteries, the HTML page of old firmware). Each says which features need it,
  how fresh its body must be for each consumer (`Need`), and which `RawSystemData` / `RawDeviceData`
  field it feeds.
- `readers.probe`: feature detection: reads the probe endpoints once through the client and decides the
  `Features` (the decisions themselves are pure, in `normalize.features`).
- `readers.planner`: the `Planner` builds each cycle of a consumer from the readers and the age of the
  bodies already held in a `BodyStore` (a body fresh enough is reused, never read twice); `CycleReader`
  runs a cycle through the client. The daemon and `envoy2mqtt check` use the same planner.
"""

from __future__ import annotations

from .catalog import DEVICE, HELD, READERS, SYSTEM, Need, Reader, raw_device_data, raw_system_data
from .planner import BodyStore, Cycle, CycleReader, Planner, Step
from .probe import Probe, probe

__all__ = [
    "DEVICE",
    "HELD",
    "READERS",
    "SYSTEM",
    "BodyStore",
    "Cycle",
    "CycleReader",
    "Need",
    "Planner",
    "Probe",
    "Reader",
    "Step",
    "probe",
    "raw_device_data",
    "raw_system_data",
]
