-- bench/close.lua -- wrk script: every request says "Connection: close", so each one costs a
-- new connection; then the WRK_RESULT line of wrk_report.lua.
wrk.headers["Connection"] = "close"
dofile(os.getenv("BENCH_DIR") .. "/wrk_report.lua")
