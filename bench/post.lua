-- wrk: POST a ~300-byte JSON body to the ceiling app.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"to":"4821937012*localhost","client_txn_id":"b7e1c1f2-3a4b-4c5d-8e9f-0a1b2c3d4e5f","body":"' .. string.rep("x", 180) .. '","meta":{"kind":"text","n":1}}'
