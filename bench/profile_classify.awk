# bench/profile_classify.awk -- reads `perf script` output (samples with call chains, leaf
# first) and prints "key<TAB>value" lines: where the samples went, by category, as microseconds
# per request (-v cpu=CPU_US_PER_REQ; NA leaves only the share) and share of all samples; then
# the kernel's share split by system call.  Used by bench/profile.sh, which documents the
# categories.  A sample is "syscalls (kernel)" if its leaf is in the kernel; else the innermost
# frame that matches a category decides; frames that match none (memmove, ...) are skipped.

function category(sym) {
	if (sym ~ /^(internal\/runtime\/syscall|syscall\.|golang\.org\/x\/sys\/unix\.|runtime\.(entersyscall|exitsyscall|reentersyscall|exitsyscallfast|entersyscallblock))/) return "syscall entry/exit (Go side)"
	if (sym ~ /^runtime\.(mallocgc|newobject|makeslice|growslice|newarray|gc|bgsweep|bgscavenge|sweep|scanobject|scanblock|scanstack|scanframe|greyobject|markroot|wbBuf|bulkBarrier|heapSetType|nextFreeFast|deductAssistCredit|findObject|spanOf|wbMove|typePointers)/ ||
		sym ~ /^runtime\.\(\*(mcache|mcentral|mheap|mspan|gcWork|gcControllerState|sweepLocked|pageAlloc|wbBuf|gcBits|scavengerState|sweepClass|activeSweep|typePointers)\)/) return "Go runtime (GC, malloc)"
	if (sym ~ /^runtime\.(schedule|findRunnable|findrunnable|netpoll|park_m|gopark|goready|ready|wakep|startm|stopm|mPark|notesleep|notewakeup|notetsleep|futex|runqget|runqput|runqgrab|runqsteal|goschedImpl|gosched_m|goschedguarded|execute|mcall|checkTimers|stealWork|casgstatus|sysmon|usleep|osyield|handoffp|acquirep|releasep|injectglist|resetspinning|newproc|goexit0|gfget|gfput|procyield|semacquire|semrelease|chansend|chanrecv|selectgo|send|recv|closechan|runtimer|runOneTimer|updateTimer|modtimer|resettimer|timeSleepUntil|nanotime|goready|readyWithTime|lock2|unlock2|lockWithRank|unlockWithRank)/ ||
		sym ~ /^runtime\.\(\*(timers|timer|waitq|hchan|mLockProfile|randomEnum)\)/ || sym ~ /^(sync\.|internal\/sync\.)/) return "scheduler"
	if (sym ~ /corral\/worker\/http1\.(\(\*ResponseWriter\)|append[A-Z]|Append(Continue|Error)|isTokenString|hasToken)/ ||
		sym ~ /fasthttp\.(\(\*(Response|ResponseHeader)\)|writeResponse|appendResponse|appendHeaderLine|appendBody)/ || sym ~ /^bufio\.\(\*Writer\)/ ||
		sym ~ /^main\.(\(\*server\)\.answer|appendFastCGI|writeAll)/ || sym ~ /worker\.\(\*[A-Za-z]*[Rr]esponse[A-Za-z]*\)/) return "response writing"
	if (sym ~ /corral\/worker\/http1\./ || sym ~ /fasthttp\.(\(\*(RequestHeader|Request|headerScanner|URI|Args)\)|parse|normalize|readRawHeaders|b2s|s2b|hasHeaderValue|caseInsensitiveCompare)/ ||
		sym ~ /^bufio\.\(\*Reader\)/ || sym ~ /^main\.(countHTTP|countUWSGI|\(\*server\)\.countFastCGI)/) return "parser"
	if (sym ~ /corral\/internal\/demo\.|^main\.main\.func|^net\/http\.(HandlerFunc|\(\*ServeMux\))/) return "handler"
	if (sym ~ /corral-server\/corral\/|fasthttp\.|^main\.|^net\.|^internal\/poll\.|^net\/http\./) return "server loop"
	return ""
}

function flush(   i, c, sc, f, dso) {
	if (nf == 0) return
	total++
	if (kern[1]) {
		c = "syscalls (kernel)"
		sc = "kernel: irq, other"
		for (i = 1; i <= nf && kern[i]; i++)
			if (fr[i] == "do_syscall_64" && i > 1) {
				sc = fr[i - 1]
				if (sc == "x64_sys_call" && i > 2) sc = fr[i - 2]
				if (sc ~ /^(syscall_)?exit_to_user_mode/) sc = "return to user (signals, resched)"
				sub(/^(__x64_sys_|__do_sys_|__se_sys_|ksys_|do_sys_|do_)/, "", sc)
				sc = "kernel: " sc
				break
			}
		ks[sc]++
	} else {
		c = ""
		for (i = 1; i <= nf && c == ""; i++) c = category(fr[i])
		if (c == "") c = (fr[1] ~ /^runtime\./) ? "runtime (other)" : "other"
	}
	cat[c]++
	nf = 0
}

function show(key, n) {
	if (cpu == "NA" || cpu == "") printf "%s\t(%.1f%%)\n", key, 100 * n / total
	else printf "%s\t%.2f us (%.1f%%)\n", key, cpu * n / total, 100 * n / total
}

/^[^ \t]/ {flush(); next}           # a sample's header line
/^[ \t]*$/ {flush(); next}
{
	line = $0
	sub(/^[ \t]+[0-9a-f]+ /, "", line) # the address
	dso = line; sub(/.*\(/, "", dso); sub(/\)$/, "", dso)
	sub(/ \([^(]*\)$/, "", line)       # the dso
	sub(/\+0x[0-9a-f]+$/, "", line)    # the offset
	fr[++nf] = line
	kern[nf] = (dso ~ /kernel\.kallsyms|^\[kernel/)
}
END {
	flush()
	if (!total) {print "samples\t0"; exit}
	print "samples\t" total
	split("syscalls (kernel)|syscall entry/exit (Go side)|parser|handler|response writing|Go runtime (GC, malloc)|scheduler|server loop|runtime (other)|other", names, "|")
	for (i = 1; i in names; i++) show(names[i], cat[names[i]] + 0)
	n = 0; for (s in ks) key[++n] = s
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (ks[key[j]] > ks[key[i]]) {t = key[i]; key[i] = key[j]; key[j] = t}
	for (i = 1; i <= n && i <= 8; i++) show("  " key[i], ks[key[i]])
}
