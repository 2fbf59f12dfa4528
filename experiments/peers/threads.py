"""How fast the peers' llama.cpp server answers with 1 and with 2 threads: 24 sst2-sized
classification answers (8 tokens, as the peers' downstream model) and two 256-token replies (as
their meta model), through the chat completions the peers use. Run from the repository root,
with the machine otherwise idle (pause a running benchmark with kill -STOP, then -CONT):
    target/peers-venv/bin/python experiments/peers/threads.py
"""
import json, subprocess, sys, time, urllib.request, socket
srv = "target/llama-cpp-server/build/bin/llama-server"
model = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def req(url, msgs, mt):
    body=json.dumps({"model":"peer","messages":msgs,"max_tokens":mt,"temperature":0,"seed":1}).encode()
    r=urllib.request.urlopen(urllib.request.Request(url+"/v1/chat/completions",body,{"Content-Type":"application/json"}),timeout=300)
    return json.load(r)
texts = ["a poignant and compelling story about relationships , food of love takes us on a bumpy but satisfying journey of the heart .",
         "should have been someone else -", "the film is strictly routine .", "an utterly charming and hilarious film that reminded me of the best of the disney comedies from the 70s ."]*6
for t in [1,2]:
    port=free_port()
    p=subprocess.Popen([srv,"-m",model,"--host","127.0.0.1","--port",str(port),"-c","4096","-t",str(t),"-np","1","--no-webui"],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    url=f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url+"/health",timeout=2); break
        except Exception: time.sleep(0.3)
    sysmsg="Please perform Sentiment Classification task. Given the sentence, assign a sentiment label from ['negative', 'positive']. Return label only without any other text."
    t0=time.time()
    for x in texts:
        req(url,[{"role":"system","content":sysmsg},{"role":"user","content":"Sentence: "+x+"\nAnswer:"}],8)
    t1=time.time()
    for i in range(2):
        req(url,[{"role":"user","content":"Improve this instruction for a sentiment task: "+sysmsg+" Reply with the new instruction. "*(i+1)}],256)
    t2=time.time()
    p.terminate(); p.wait()
    print(f"threads {t}: 24 answers {t1-t0:.2f} s, 2 meta {t2-t1:.2f} s", flush=True)
