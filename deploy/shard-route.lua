-- Sharded mode (README, "Sharded mode"; docs/SCALING.md): HAProxy computes the Kafka partition
-- of the channel a request names, so it can send the request to the shard group whose replicas
-- consume that partition (SHARD_PARTITIONS).
--
-- The partition is Kafka's DefaultPartitioner's: positive(murmur2(utf-8 bytes of the key)) mod
-- the topic's partition count, where the key is the channel's name (the room, the symbol), as
-- the gateway's producer writes it (src/bus/partitioner.ts). Lua 5.3 integers are 64-bit, so
-- each 32-bit product is exact before it is masked back to 32 bits.
--
-- Action: `http-request lua.kafka_partition <partitions>` sets txn.partition to the partition, and
-- leaves it unset for a request that names no channel (/, /status, /readyz, /app.js, ...), so
-- such a request goes to the default backend (any replica). An action rather than a sample fetch:
-- HAProxy turns a fetch's nil into the integer 0, which would send every such request to the
-- group owning partition 0.

local M = 0x5bd1e995
local MASK = 0xffffffff

local function murmur2(data)
  local length = #data
  local h = (0x9747b28c ~ length) & MASK
  local i = 1
  for _ = 1, length // 4 do
    local b1, b2, b3, b4 = string.byte(data, i, i + 3)
    local k = b1 | (b2 << 8) | (b3 << 16) | (b4 << 24)
    k = (k * M) & MASK
    k = k ~ (k >> 24)
    k = (k * M) & MASK
    h = (h * M) & MASK
    h = h ~ k
    i = i + 4
  end
  local remaining = length % 4
  if remaining == 3 then h = h ~ (string.byte(data, i + 2) << 16) end
  if remaining >= 2 then h = h ~ (string.byte(data, i + 1) << 8) end
  if remaining >= 1 then
    h = h ~ string.byte(data, i)
    h = (h * M) & MASK
  end
  h = h ~ (h >> 13)
  h = (h * M) & MASK
  h = h ~ (h >> 15)
  return h
end

local function unescape(text)
  return (text:gsub('%+', ' '):gsub('%%(%x%x)', function(hex) return string.char(tonumber(hex, 16)) end))
end

-- Query parameters of /events that are not channels (routes/streams.ts ResumeQuery, and the
-- auth token): every other parameter is a channel kind's (room, ticker, a declared kind's name).
local NOT_CHANNELS = { lastEventId = true, since = true, token = true, name = true }

-- The channel name a request is about, or nil. One-channel paths: /events/<room>,
-- /rooms/<room>[/...], /tickers/<symbol>/..., /streams/<kind>/<channel>[/<type>]. On /events?room=a&...
-- (several channels on one stream) the first channel decides: a stream whose channels live in
-- different shard groups is refused by the replica (409) whichever group gets it.
local function channelOf(path, query)
  local name = path:match('^/events/([^/]+)$')
    or path:match('^/rooms/([^/]+)')
    or path:match('^/tickers/([^/]+)/')
    or path:match('^/streams/[^/]+/([^/]+)')
  if name ~= nil then return unescape(name) end
  if path == '/events' and query ~= nil then
    for key, value in query:gmatch('([^&=]+)=([^&]*)') do
      if not NOT_CHANNELS[key] and value ~= '' then return unescape(value) end
    end
  end
  return nil
end

core.register_action('kafka_partition', { 'http-req' }, function(txn, partitions)
  local count = tonumber(partitions)
  if count == nil or count < 1 then return end
  local name = channelOf(txn.f:path() or '', txn.f:query())
  if name == nil then return end
  txn:set_var('txn.partition', (murmur2(name) & 0x7fffffff) % count)
end, 1)
