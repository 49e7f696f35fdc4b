-- bench/pipeline.lua -- wrk script: 16 requests written at once on each connection (HTTP/1.1
-- pipelining), then the WRK_RESULT line of wrk_report.lua. wrk counts each response.
local depth = 16
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format("GET", "/") end
  pipelined = table.concat(r)
end
request = function() return pipelined end
dofile(os.getenv("BENCH_DIR") .. "/wrk_report.lua")
