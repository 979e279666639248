"""The server's API with a real client: streaming generation equals the offline generator,
Complete equals Generate, health, reflection, Tokenize/Detokenize, GetModelInfo, logprobs."""
import json
import subprocess
import unittest

import grpc

import harness
from harness import health_pb, pb, reflection_pb


class ServerApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server()
        cls.client = cls.server.client

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_health_is_serving(self):
        self.assertEqual(self.client.health(), health_pb.HealthCheckResponse.SERVING)
        self.assertEqual(self.client.health("deltaserve.v1.DeltaServe"),
                         health_pb.HealthCheckResponse.SERVING)

    def test_reflection_lists_services_and_serves_descriptors(self):
        requests = [reflection_pb.ServerReflectionRequest(list_services=""),
                    reflection_pb.ServerReflectionRequest(
                        file_containing_symbol="deltaserve.v1.DeltaServe")]
        responses = list(self.client.reflection(iter(requests), timeout=10))
        names = {s.name for s in responses[0].list_services_response.service}
        self.assertIn("deltaserve.v1.DeltaServe", names)
        self.assertIn("grpc.health.v1.Health", names)
        self.assertIn("grpc.reflection.v1alpha.ServerReflection", names)
        files = responses[1].file_descriptor_response.file_descriptor_proto
        self.assertTrue(files)
        from google.protobuf import descriptor_pb2
        fd = descriptor_pb2.FileDescriptorProto.FromString(files[0])
        self.assertEqual(fd.package, "deltaserve.v1")
        self.assertIn("Generate", [m.name for m in fd.service[0].method])

    def test_stream_matches_offline_generator(self):
        prompt, n = "In the beginning God created", 48
        ids, text, last = self.client.stream_tokens(harness.greedy_request(prompt, n))
        self.assertEqual(len(ids), n)
        self.assertTrue(last.HasField("finished"))
        self.assertEqual(last.finished.finish_reason, pb.FINISH_REASON_LENGTH)
        self.assertEqual(last.finished.usage.generated_tokens, n)
        self.assertEqual(last.finished.usage.prompt_tokens, len(prompt) + 1)  # byte tokens + BOS
        self.assertGreater(last.finished.timings.total_seconds, 0)
        offline = subprocess.run(
            [harness.DELTASERVE, "generate", "--model", harness.MODEL_DIR, "--prompt", prompt,
             "--max-new-tokens", str(n), "--temperature", "0", "--ignore-eos", "--print-ids",
             "--threads", "1"],
            check=True, capture_output=True, text=True, timeout=120)
        offline_ids = [int(x) for x in offline.stdout.strip().splitlines()[-1].split(",")]
        self.assertEqual(ids, offline_ids)
        detok = self.client.detokenize(pb.DetokenizeRequest(token_ids=ids), timeout=10)
        self.assertEqual(text, detok.text)

    def test_example_client(self):
        out = subprocess.run([harness.sys.executable, harness.SOURCE_DIR + "/server/example_client.py",
                              "--target", self.server.address, "--prompt", "In the beginning",
                              "--max-new-tokens", "16"],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        request = harness.greedy_request("In the beginning", 16)
        request.stopping.ignore_eos = False  # as the example client asks
        expected = self.client.complete(request, timeout=60)
        self.assertEqual(out.stdout, expected.text)
        self.assertIn(pb.FinishReason.Name(expected.finished.finish_reason), out.stderr)

    def test_complete_equals_generate(self):
        req = harness.greedy_request("And the earth", 24)
        ids, text, last = self.client.stream_tokens(req)
        resp = self.client.complete(req, timeout=60)
        self.assertEqual(list(resp.token_ids), ids)
        self.assertEqual(resp.text, text)
        self.assertEqual(resp.finished.finish_reason, pb.FINISH_REASON_LENGTH)
        self.assertTrue(resp.request_id.startswith("req-"))

    def test_request_id_is_echoed_and_token_prompt_works(self):
        toks = self.client.tokenize(pb.TokenizeRequest(text="light"), timeout=10)
        req = pb.GenerateRequest(request_id="client-id.1", token_ids=pb.TokenIds(ids=toks.token_ids),
                                 sampling=pb.SamplingParams(temperature=0),
                                 stopping=pb.StoppingParams(max_new_tokens=8, ignore_eos=True))
        msgs = list(self.client.generate(req, timeout=60))
        self.assertTrue(all(m.request_id == "client-id.1" for m in msgs))
        by_text = self.client.complete(harness.greedy_request("light", 8), timeout=60)
        self.assertEqual([t for m in msgs for t in m.token_ids], list(by_text.token_ids))

    def test_sampling_with_seed_is_reproducible(self):
        req = pb.GenerateRequest(text="Let there be", sampling=pb.SamplingParams(
            temperature=0.9, top_k=40, top_p=0.95, seed=1234),
            stopping=pb.StoppingParams(max_new_tokens=20, ignore_eos=True))
        a = self.client.complete(req, timeout=60)
        b = self.client.complete(req, timeout=60)
        self.assertEqual(list(a.token_ids), list(b.token_ids))
        self.assertEqual(len(a.token_ids), 20)

    def test_logprobs(self):
        req = harness.greedy_request("In the", 6)
        req.sampling.top_logprobs = 3
        resp = self.client.complete(req, timeout=60)
        self.assertEqual(len(resp.logprobs), len(resp.token_ids))
        for tok, lp in zip(resp.token_ids, resp.logprobs):
            self.assertEqual(lp.token_id, tok)
            self.assertLessEqual(lp.logprob, 0)
            self.assertEqual(len(lp.top), 3)
            self.assertEqual(lp.top[0].token_id, tok)  # greedy picks the best
            self.assertAlmostEqual(lp.top[0].logprob, lp.logprob, places=4)

    def test_stop_string(self):
        full = self.client.complete(harness.greedy_request("In the beginning", 40), timeout=60)
        stop = full.text[10:13]
        req = harness.greedy_request("In the beginning", 40)
        req.stopping.stop_strings.append(stop)
        resp = self.client.complete(req, timeout=60)
        self.assertEqual(resp.finished.finish_reason, pb.FINISH_REASON_STOP)
        self.assertEqual(resp.text, full.text[:full.text.find(stop)])

    def test_tokenize_detokenize(self):
        toks = self.client.tokenize(pb.TokenizeRequest(text="héllo"), timeout=10)
        info = self.client.model_info(pb.GetModelInfoRequest(), timeout=10)
        self.assertEqual(toks.token_ids[0], info.config.bos_token_id)
        self.assertEqual(list(toks.token_ids[1:]), list("héllo".encode()))
        no_bos = self.client.tokenize(pb.TokenizeRequest(text="hi", add_bos=False), timeout=10)
        self.assertEqual(list(no_bos.token_ids), [104, 105])
        text = self.client.detokenize(pb.DetokenizeRequest(token_ids=toks.token_ids), timeout=10)
        self.assertEqual(text.text, "héllo")

    def test_model_info(self):
        info = self.client.model_info(pb.GetModelInfoRequest(), timeout=10)
        with open(harness.MODEL_DIR + "/config.json") as f:
            config = json.load(f)
        self.assertEqual(info.model, "default")
        self.assertEqual(info.backend, "cpu")
        self.assertEqual(info.vocab_size, config["vocab_size"])
        self.assertEqual(info.config.n_layer, config["n_layer"])
        self.assertEqual(info.config.n_embd, config["n_embd"])
        self.assertEqual(info.config.eos_token_id, config["eos_token_id"])
        self.assertEqual(info.config.tokenizer, "byte")
        self.assertGreater(info.state_bytes_per_slot, 0)
        self.assertEqual(info.pool_slots, (64 << 20) // info.state_bytes_per_slot)
        self.assertEqual(info.max_context, config["max_context"])
        self.assertEqual(info.max_prompt_tokens, config["max_context"] - 1)
        self.assertEqual(info.max_new_tokens_cap, 4096)
        self.assertEqual(info.default_max_new_tokens, 256)
        self.assertIn('"n_layer"', info.config_json)
        metrics = self.server.metrics_text()
        self.assertIn("deltaserve_state_pool_slots %d" % info.pool_slots, metrics)
        self.assertIn('deltaserve_model_info{backend="cpu",model="default"} 1', metrics)


if __name__ == "__main__":
    harness.main()
