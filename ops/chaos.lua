-- wrk load for ./ops/chaos: reservations through the load balancer, one seat each, every
-- request with an Idempotency-Key of its own and one of many people's tokens (so the
-- per-person cap is hit too). wrk does not retry; the ids of its 201s are written to
-- $CHAOS_WRK_OUT at the end, and the chaos run checks each one is in both stores.

local threads = {}

function setup(thread)
    thread:set("thread_number", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    tokens = {}
    for line in io.lines(os.getenv("CHAOS_TOKENS")) do
        tokens[#tokens + 1] = line
    end
    path = "/v1/offerings/" .. os.getenv("CHAOS_OFFERING") .. "/reservations"
    prefix = "wrk-" .. os.getenv("CHAOS_RUN") .. "-" .. thread_number .. "-"
    counter = 0
    acked_text = ""
end

function request()
    counter = counter + 1
    local token = tokens[(counter * 7 + thread_number) % #tokens + 1]
    local headers = {
        ["Authorization"] = "Bearer " .. token,
        ["Idempotency-Key"] = prefix .. counter,
        ["Content-Type"] = "application/json",
    }
    return wrk.format("POST", path, headers, '{"quantity":1}')
end

function response(status, headers, body)
    if status == 201 then
        local id = body:match('"reservation_id":"(%x+)"')
        if id then
            acked_text = acked_text .. id .. "\n"
        end
    end
end

function done(summary, latency, requests)
    local out = io.open(os.getenv("CHAOS_WRK_OUT"), "w")
    for _, thread in ipairs(threads) do
        out:write(thread:get("acked_text") or "")
    end
    out:close()
end
