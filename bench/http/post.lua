-- wrk script: POST a 300-byte body to /echo.
wrk.method = "POST"
wrk.body = string.rep("x", 300)
wrk.headers["Content-Type"] = "application/octet-stream"
