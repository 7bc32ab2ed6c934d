# Fake of the SD folder's common.py: the real constant names and the per-architecture choice.

from models.common.utility_functions import is_blackhole

# L1 Small Size Constants
SD_L1_SMALL_SIZE = 21760 if is_blackhole() else 20928
# Trace Region Size Constants
SD_TRACE_REGION_SIZE = 920000000 if is_blackhole() else 789835776
