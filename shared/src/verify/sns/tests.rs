use serde_json::{json, Value};

use super::*;
use crate::https::MemoryHttps;
use crate::secret::KeyEncoding;
use crate::verify::test_support::{at, WINDOW};
use crate::verify::{verify, Verified};

/// The samples' public test material (`shared/samples/sns-test/`, made with openssl), and
/// the samples' payloads, signed with it by openssl.
const TEST_CERTIFICATE: &str = include_str!("../../../samples/sns-test/certificate.pem");
const TEST_KEY: &str = include_str!("../../../samples/sns-test/signing-key.pem");
const WRONG_KEY: &str = include_str!("../../../samples/sns-test/wrong-signing-key.pem");
const NOTIFICATION: &str = include_str!("../../../../events/payloads/sns/notification.json");
const CONFIRMATION: &str =
    include_str!("../../../../events/payloads/sns/subscription_confirmation.json");
const TEST_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-hookgate-test.pem";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:hookgate-test-alarms";

fn keys(topics: &str) -> KeyRing {
    KeyRing::from_secrets(topics, None, KeyEncoding::Raw).unwrap()
}

fn rsa_key(pem: &str) -> SigningKey {
    SigningKey::parse(pem, KeyEncoding::RsaPrivatePem).unwrap()
}

/// The scheme with the samples' certificate at the samples' URL, and `https` for the rest.
fn scheme_on(https: MemoryHttps) -> Sns {
    Sns::new(Arc::new(https))
        .with_certificate(TEST_URL, TEST_CERTIFICATE)
        .unwrap()
}

fn scheme() -> Sns {
    scheme_on(MemoryHttps::new())
}

fn check(scheme: &Sns, body: &str, topics: &str) -> Result<(), AuthFailure> {
    scheme.check_signature(
        &InboundRequest::post(body.to_owned()),
        &keys(topics),
        at(0),
        WINDOW,
    )
}

/// `body` signed with `key` as SNS signs it (`SignatureVersion` 2).
fn signed_with(body: &str, key: &str) -> String {
    let delivery = OutgoingDelivery {
        body: body.as_bytes(),
        signed_at: at(0),
        id: "",
        url: "",
    };
    String::from_utf8(scheme().sign_body(&delivery, &rsa_key(key)).unwrap()).unwrap()
}

fn signed(body: &str) -> String {
    signed_with(body, TEST_KEY)
}

/// The JSON document `body` with `change` made to it, signed again with the test key.
fn changed_and_signed(body: &str, change: impl FnOnce(&mut Value)) -> String {
    signed(&changed(body, change))
}

/// The JSON document `body` with `change` made to it, its signature left as it was.
fn changed(body: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut document: Value = serde_json::from_str(body).unwrap();
    change(&mut document);
    document.to_string()
}

fn malformed_field(field: &str) -> Result<(), AuthFailure> {
    Err(AuthFailure::MalformedSignature {
        header: field.to_owned(),
    })
}

// ---- SNS's own messages ----

/// The certificate SNS signed the PHP validator's fixtures with (expired 2022-08-17), from
/// aws-php-sns-message-validator's `tests/FunctionalValidationsTest.php`.
const PHP_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIF1zCCBL+gAwIBAgIQB9pYWG3Mi7xej22g9pobJTANBgkqhkiG9w0BAQsFADBG
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRUwEwYDVQQLEwxTZXJ2ZXIg
Q0EgMUIxDzANBgNVBAMTBkFtYXpvbjAeFw0yMTA5MDcwMDAwMDBaFw0yMjA4MTcy
MzU5NTlaMBwxGjAYBgNVBAMTEXNucy5hbWF6b25hd3MuY29tMIIBIjANBgkqhkiG
9w0BAQEFAAOCAQ8AMIIBCgKCAQEAutFqueT3XgP13udzxE6UpbdjOtVO5DwoMpSM
iDNMnGzF1TYH5/R2LPUOBeTB0SkKnR4kpNcUZhicpGD4aKciz/GEZ6wu65xncfT9
H/KBOQwoXYTuClHwp6fYpGzcGFaFoEYMnijL/o4qmTSd+ukglQUgKpsDw4ofw6rU
m2CttJo+GQSNQ9NfGR1h/0J+zsApkeSYrXRx5wNlu87z8os1C/6PBrUHwt3xXeaf
Xzfwut8aRRYsS8BySOA9DAgLfNHlfdQCjKPXKrG/ussgReyWD6n/HH+j7Uha3xos
TzQqJifcxlTq6MxWdPR6fDaJNvqw6DOE7UjUNxHguXHlVfxhlQIDAQABo4IC6TCC
AuUwHwYDVR0jBBgwFoAUWaRmBlKge5WSPKOUByeWdFv5PdAwHQYDVR0OBBYEFAqz
C+vyouneE7mWWLbi9i0UsWUbMBwGA1UdEQQVMBOCEXNucy5hbWF6b25hd3MuY29t
MA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEFBQcDAQYIKwYBBQUHAwIw
OwYDVR0fBDQwMjAwoC6gLIYqaHR0cDovL2NybC5zY2ExYi5hbWF6b250cnVzdC5j
b20vc2NhMWIuY3JsMBMGA1UdIAQMMAowCAYGZ4EMAQIBMHUGCCsGAQUFBwEBBGkw
ZzAtBggrBgEFBQcwAYYhaHR0cDovL29jc3Auc2NhMWIuYW1hem9udHJ1c3QuY29t
MDYGCCsGAQUFBzAChipodHRwOi8vY3J0LnNjYTFiLmFtYXpvbnRydXN0LmNvbS9z
Y2ExYi5jcnQwDAYDVR0TAQH/BAIwADCCAX0GCisGAQQB1nkCBAIEggFtBIIBaQFn
AHYAKXm+8J45OSHwVnOfY6V35b5XfZxgCvj5TV0mXCVdx4QAAAF7vfDVkQAABAMA
RzBFAiEA2XfHuy36aqRFiaL8c3md2mH451go8707+fRE0pEdSRACIE/g5FXTUXUZ
PFcmOhm9TZ+uMY1i4CIQ/CKVWln6C3t+AHYAUaOw9f0BeZxWbbg3eI8MpHrMGyfL
956IQpoN/tSLBeUAAAF7vfDVjAAABAMARzBFAiBF1MhhFP0+FQt3daDFfMYoWwnr
muTInrjNpwfzlvQBugIhAPYadFzr+LaxSJoiZEbEHBvTts7bT0M3eCQONA2O7w6n
AHUAQcjKsd8iRkoQxqE6CUKHXk4xixsD6+tLx2jwkGKWBvYAAAF7vfDVdAAABAMA
RjBEAiAtPapmFAuA71ih4NoSd5hJelzAltNQpxDMcDfDyHyU8gIgWxmaa6+2KbBu
9xdv379zvnJACFR7jc+4asl08Dn4aagwDQYJKoZIhvcNAQELBQADggEBAA54QX0u
oFWXfMmv02CGZv4NWo5TapyeeixQ2kKpZHRdVZjxZrw+hoF6HD7P3kGjH8ztyJll
tDxB0qgMltbPhQdScwhA6iTgoaBYqEUC/VHKd4PmmPT6yIsM36NBZVmkGlzl5uNo
/dBgBaG0SsVJnhr5zro3c2quC7n6fVGEZhf/UgQwRnnvThnvbNKguglDMq4uEqv8
njKyleht+glkcmXO0m9qLKt6BOS0amy6U2GlAwRn0Wx02ndJtnRCSC6kPuRWK/SQ
FEjB7gCK4hdKaAOuWdZpI55vF6ifOeM8toC3g7ofO8qLTnJupAG+ZitY5J3cvHWr
HqOUdKigPDHYLRo=
-----END CERTIFICATE-----
";
const PHP_URL: &str =
    "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";

/// `getHttpFixtures()` of the same test: real notifications, versions 1 and 2, with and
/// without a subject (`SubscribeURL`'s sibling `UnsubscribeURL` left out: it is unsigned).
fn php_fixtures() -> Vec<Value> {
    let fixture = |id: &str,
                   topic: &str,
                   subject: Option<&str>,
                   timestamp: &str,
                   version: &str,
                   signature: &str| {
        let mut message = json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": format!("arn:aws:sns:us-east-2:295079676684:publish-and-verify-{topic}"),
            "Message": "Hello world",
            "Timestamp": timestamp,
            "SignatureVersion": version,
            "Signature": signature,
            "SigningCertURL": PHP_URL,
        });
        if let Some(subject) = subject {
            message["Subject"] = subject.into();
        }
        message
    };
    vec![
        fixture("792cda85-518f-5dd3-9163-81d851212f3a", "892f85fe-4836-424d-8188-ab85bef0f362", None, "2022-07-28T21:23:58.317Z", "1",
            "ghtf+deOBAzHJJZ6s6CdRLfTQAlcGzq9naoFM1wi0CJiq//uVRuZnamrkWNF0fhouMFvuLVRwcz8PZLUMSfnmd5VpdTKpTyiKmy1qJAZXma0w+yi7G+I33hD1Jyk1Nbym2n0kqp3fVu2aoooiN2ZeLAT2bH0/BtjLSfN1yAOKNoprco4qV9gGUZinXJdj9a1YdNhDR2jKi33ldlsVtEXAtiaDklGEk7DgRKX38GerBPiLg3FdtgY6KC7cdeGpU/dGK+4hjc83Ive1HoFkAwqhpgInM2sMytBosoiXfCmOKmU4xeGD0gHDNZTlJUJQDlzw8Eag0H9f/5zXF9d3uy0YQ=="),
        fixture("17dea24b-55c2-540b-8362-f916557af765", "62674b1d-4295-426b-88e7-5fb75652a04e", None, "2022-07-28T21:24:08.324Z", "2",
            "CXVqp9PfZAL+4JHS3Zxo1PFbQsvnOjvmYhtIf17TWpwc+iIVas8kZ8GopuzVzVMdatE7rCl/O4P91Zp05Dwz8lk8dLhfp8gSu3Njlzxlyrmzo9x3va3Jb7zFnedgS2GKnZWHGBdwTXho+TosNUE+3e10OMSlwN5XGDwX7+R3WL+rn+AXmFAqp3alg27sYa55h1dLE9cGszGPjScPdtF3BmZsUDMx9wSdNKsCk+vSvE8yBjnCmUl7laSFj3LzPVrlSwgNYCF3kYnNAkah7NplK4SFhJYLwS0HCVCQJKa8rVbQLf9cBTu60U402mrgy0bN8xWoyimzbYbrOMJjalqkUg=="),
        fixture("11405cc3-9ac7-56d5-b45d-079e8f7a8edf", "6e11fed2-fcdf-4c52-9dc4-36ef43f37f84", Some("Hello world"), "2022-07-28T22:53:49.654Z", "1",
            "AItkS26d8yvnIKJevdirIPW7eM/yKbZy3/CF2EreCHmXWB3etWaV5Fb7SYpGABMpugpDZzNyGY1wCVWaopDoQ+7Q/kI2TpDu8bw1eExbi8U3kduvc/2m2fIrI4gDEY8/v3nzoLcr8pPodqMzrX6SzQou4klfaqbNK+rFmH0LVf2Q1VyOROODoSXmo4jg2Yu12jfxccBl96Drr/ihq4MJ4OcrWh6UzXXlVYjJHx2Ui4anNwNEb+Z4C2CAF1DjQUbhDtaoajDBPY+4d9C1OwbqwQpXsd6tyVcI9nFyEsVK8lfnAV+/3GZQcdXHbIUYBRGcBa4X5TlWJku5nDH2ERtHHw=="),
        fixture("4504e649-d933-5aa9-8199-bd14ccf05f0b", "530b26da-0687-4fe4-9f71-780bad3181e2", Some("Hello world"), "2022-07-28T22:53:55.086Z", "2",
            "cETcSvmmkt+My05qCLKexyl0+RyG83mSryKPqTfS+tYcxDJWVcjPJAr+qdpElzVaBl1aTGYVWMY64i9JqZ/JES8pylNj8LGvdhuNQKO59/WCoIimZAsNhn0xEgOeeDU+W/0BU4sdpCGMNjo0S/FuIiWaRe4E0YWRVrxeQevaQ70euDdfWgd5v1eCKQz8b367b9XBmMztL/CWUFI6YaKK/MV21eyvJe3Y7CtVYiOKEYiAZnAEkynK7gUGO5TsgDjGNYhj6U3xYsWgI03bmioSl7kdFSUj+AZ7ugas5fghqxgoDsdfqsjMYKRm5KKHQWsgzI619yIzpNKUiSMHxdZXpQ=="),
    ]
}

fn php_scheme() -> Sns {
    Sns::new(Arc::new(MemoryHttps::new()))
        .with_certificate(PHP_URL, PHP_CERTIFICATE)
        .unwrap()
}

fn topic_of(message: &Value) -> String {
    message["TopicArn"].as_str().unwrap().to_owned()
}

#[test]
fn accepts_snss_own_version_1_and_2_notifications_from_the_php_validators_tests() {
    let scheme = php_scheme();
    for message in php_fixtures() {
        assert_eq!(
            check(&scheme, &message.to_string(), &topic_of(&message)),
            Ok(()),
            "{message}"
        );
    }
}

/// The certificate of aws-sdk-java-v2's `sns-message-manager` test resources (valid until
/// 2026-10-14), and SNS's own confirmations from the same folder,
/// `test-subscription-confirmation.json` (version 1) and `test-unsubscribe-confirmation.json`
/// (version 2), byte for byte.
const JAVA_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIFxTCCBK2gAwIBAgIQBkyRNHAyygLkObkxH5ju+zANBgkqhkiG9w0BAQsFADA8
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRwwGgYDVQQDExNBbWF6b24g
UlNBIDIwNDggTTAxMB4XDTI1MTExMDAwMDAwMFoXDTI2MTAxNDIzNTk1OVowHDEa
MBgGA1UEAxMRc25zLmFtYXpvbmF3cy5jb20wggEiMA0GCSqGSIb3DQEBAQUAA4IB
DwAwggEKAoIBAQChbVNQ+DEaT5WN+l+bg0iEeF666Z6LDFc1KJr4lNl0odcXQSsk
KsZYCMVdp4I/Ikk9zWyckRTMkmQGYimpD+bTsMCP5C/sJIU0E9Y2OXjjl5Videkq
qnRL9VdE5N41Rvks7S/5MpYcSmCsmaHfwcv82Gvx2zm9CrA5Xu7K2ZqhzRQPCRSP
mHTHQr4ED63ujE+qTpPgQZ0TvgmcrAc08Z75Z7Zzs17aTNc3YhAtQx9WowN8uiHk
kgc+ONNdtwKvWZNmnbmxMHYtYc291WCP1K1Nh4TV5XNyjIebzQKDrqTCN0ItAr1x
e6Bl3BYS3SG9XHAy0q3ekITzQsKypcuaK6dTAgMBAAGjggLhMIIC3TAfBgNVHSME
GDAWgBSBuA5jiokSGOX6OztQlZ/m5ZAThTAdBgNVHQ4EFgQUBQEUzzzuVJAKzAlR
d0Q//W6HvZUwHAYDVR0RBBUwE4IRc25zLmFtYXpvbmF3cy5jb20wEwYDVR0gBAww
CjAIBgZngQwBAgEwDgYDVR0PAQH/BAQDAgWgMBMGA1UdJQQMMAoGCCsGAQUFBwMB
MDsGA1UdHwQ0MDIwMKAuoCyGKmh0dHA6Ly9jcmwucjJtMDEuYW1hem9udHJ1c3Qu
Y29tL3IybTAxLmNybDB1BggrBgEFBQcBAQRpMGcwLQYIKwYBBQUHMAGGIWh0dHA6
Ly9vY3NwLnIybTAxLmFtYXpvbnRydXN0LmNvbTA2BggrBgEFBQcwAoYqaHR0cDov
L2NydC5yMm0wMS5hbWF6b250cnVzdC5jb20vcjJtMDEuY2VyMAwGA1UdEwEB/wQC
MAAwggF/BgorBgEEAdZ5AgQCBIIBbwSCAWsBaQB3ANdtfRDRp/V3wsfpX9cAv/mC
yTNaZeHQswFzF8DIxWl3AAABmnAb33MAAAQDAEgwRgIhANXAgMEZWU326cqxqwnf
ntD0XcBjRbmvVMOp3hZ8boPXAiEAkI3NTMXcdLCChHak1ipOae7K7r3spMGUMk6Q
cEUKqBEAdgDCMX5XRRmjRe5/ON6ykEHrx8IhWiK/f9W1rXaa2Q5SzQAAAZpwG9+u
AAAEAwBHMEUCIQD+Qyok8NYaFuQkccW+XIMmxHxj6Yka2wjtg6UN/tbU5wIgcp4z
8MyC/dUfeLRuHAt0owtVgEu7xXqrMBOYlbXrfC4AdgDLOPcViXyEoURfW8Hd+8lu
8ppZzUcKaQWFsMsUwxRY5wAAAZpwG9+yAAAEAwBHMEUCIQCmu1jQUG9A2br7OqwM
FvQXtBX10yIvvDa6a2Ov1Zgg6gIgKlqRvN6WhX0pSHAN2bKmjRwIUI3X9kjS/A/m
DYULaV4wDQYJKoZIhvcNAQELBQADggEBAIbTQWQhqrG6SzwLq79tKCpI0aL0xlD+
/jrGPxpwTlK7rtAArHiEVh/bsmwLYRlIxPBiU+NE/kqeT0lhJA6/e3X3KRmnpJ6u
Z70PJGYwmZbSRsFom0vGFBMncX0qYx1iD0dooPeAkkSnM5j81rBh+FepV3HfF+tA
9gaglWLsU7Z/A0fdn9D32UPreVHloOut5EyEinvXRUAWZco9CRloyEXJr7Mxq9MZ
vYOK+5wuSPHnPij+fGlQsPxEgoTnCmU03PqNS49kL13jjEnYYdijqL+4rfHtuZbc
4hlVoZfttwg8wD3m5brhQ+GkBBNYN8HFtdVy/BnFi+SPJqv6BgB3Y00=
-----END CERTIFICATE-----
";
const JAVA_URL: &str =
    "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem";
const JAVA_TOPIC: &str = "arn:aws:sns:us-west-2:131990247566:dongie-standard-topic";
const JAVA_SUBSCRIPTION_CONFIRMATION: &str = r#"{
  "Type" : "SubscriptionConfirmation",
  "MessageId" : "f3f2fc87-c426-4c2f-9044-b55890c0939c",
  "Token" : "2336412f37fb687f5d51e6e2425929f52e8e353134fe72d55ef8b330217d82da14007cbccefffd35b695feb8f0294d01fd9644f41e1ddfad261519a2c0bac743ff375eeb64530147d2da57f3acc54739da14c8dbd48a9d58ce996eff0d498ea6b4b9f58720d8959b52b99b8de148081720d7da17434e376614a00c992e7823e4",
  "TopicArn" : "arn:aws:sns:us-west-2:131990247566:dongie-standard-topic",
  "Message" : "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:131990247566:dongie-standard-topic.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
  "SubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:131990247566:dongie-standard-topic&Token=2336412f37fb687f5d51e6e2425929f52e8e353134fe72d55ef8b330217d82da14007cbccefffd35b695feb8f0294d01fd9644f41e1ddfad261519a2c0bac743ff375eeb64530147d2da57f3acc54739da14c8dbd48a9d58ce996eff0d498ea6b4b9f58720d8959b52b99b8de148081720d7da17434e376614a00c992e7823e4",
  "Timestamp" : "2026-03-06T19:31:32.895Z",
  "SignatureVersion" : "1",
  "Signature" : "Ce2Ax8UbEq0RrVH7gsjP9WZ9bzif7dUkAY4OH99Pv7FSrvs8cK+uiH3a6ig54rXWUnZRUejk8K6KeK5Q80O9iJp8KbPRKdQ0PkJ3YASdabhfK0e7evC05YR2pFoS6nNaqNzT7HrR1d1Z9iLoFxluo2Dzb7kWVB7e9jp/y+ZBXRzRIaZgscM84kahBc6QgXOFJA1/PFA4cB5qaa6tBcUFtTE63o9vJ4wMmKk93W9MoszC+dNJeVFr8VHmt3toR+3JauBCZnGdgXgsDhni4PduSfWJJxEpuOK41iYf1hW+xFNFFsv46siTFiHdHiYDfI7/VlaY4spMgkq3EndRr7rHzQ==",
  "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"
}"#;
const JAVA_UNSUBSCRIBE_CONFIRMATION: &str = r#"{
  "Type" : "UnsubscribeConfirmation",
  "MessageId" : "0b71e34e-42c3-486a-9e32-b1928ec994b5",
  "Token" : "2336412f37fb687f5d51e6e2425929f52e8e353134fd0284eae5672847af082a982c7dd18215a1485e04e559716f8b42054594757f42dee2d63c46fd3a0fa59b4d688de03db956f8bf9f8cb3167587a28b74c5d325e6a7594d24a43ac534de2dfca614ca89cebd490342c721c30a76ea03def13673437a6a3e450642580119d0",
  "TopicArn" : "arn:aws:sns:us-west-2:131990247566:dongie-standard-topic",
  "Message" : "You have chosen to deactivate subscription arn:aws:sns:us-west-2:131990247566:dongie-standard-topic:b24e11a2-06bd-4e73-aa29-0ed2de3b41b5.\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message.",
  "SubscribeURL" : "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:131990247566:dongie-standard-topic&Token=2336412f37fb687f5d51e6e2425929f52e8e353134fd0284eae5672847af082a982c7dd18215a1485e04e559716f8b42054594757f42dee2d63c46fd3a0fa59b4d688de03db956f8bf9f8cb3167587a28b74c5d325e6a7594d24a43ac534de2dfca614ca89cebd490342c721c30a76ea03def13673437a6a3e450642580119d0",
  "Timestamp" : "2026-03-06T20:02:25.038Z",
  "SignatureVersion" : "2",
  "Signature" : "RLW/cGWZAdY96iEcvXGmAZQ851DUyWehJIUMHT3Qa0/kX7Wu2QimI44TfE8d9hTqyYFreA6ln4AS67m225DuySpBeiUBtzB/ibiU7jdZmfSiT/I/RTEU3eD0lHHZIYW0M7HAlhHyaSXdcSAbtfnhMBMION93IVl6UOR4kWYdJaJ17/u3by3zlSRs8wCIpj06S6BzuzxrINZPJl+NKZYCVdMlrjuT4etX/UfZkC0Tjchpmu/CQcuimAgswlesm8cVue0WqNPXkOr8h7HmsiGVXPN1jjkYKf2/tVJyBxur/lSksMopER8wtAIsrqY1caAZSI8YJkIndg/b+7eCwkjTBA==",
  "SigningCertURL" : "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem"
}"#;

fn java_scheme() -> Sns {
    Sns::new(Arc::new(MemoryHttps::new()))
        .with_certificate(JAVA_URL, JAVA_CERTIFICATE)
        .unwrap()
}

#[test]
fn accepts_snss_own_version_1_subscription_confirmation_from_the_java_sdks_tests() {
    assert_eq!(
        check(&java_scheme(), JAVA_SUBSCRIPTION_CONFIRMATION, JAVA_TOPIC),
        Ok(())
    );
}

#[test]
fn accepts_snss_own_version_2_unsubscribe_confirmation_with_its_token_signed() {
    assert_eq!(
        check(&java_scheme(), JAVA_UNSUBSCRIBE_CONFIRMATION, JAVA_TOPIC),
        Ok(())
    );
}

#[test]
fn an_old_timestamp_is_no_reason_to_refuse() {
    // SNS's messages of 2022, checked four years on with the tightest window: SNS retries
    // keep the Timestamp, and AWS's validators check no age (see the module's doc).
    let scheme = php_scheme();
    let message = &php_fixtures()[1];
    let request = InboundRequest::post(message.to_string());
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let verified = verify(
        &scheme,
        &request,
        &keys(&topic_of(message)),
        now,
        Duration::from_secs(1),
    );
    assert!(matches!(verified, Ok(Verified::Webhook(_))), "{verified:?}");
}

// ---- openssl's signatures with the samples' test key ----

#[test]
fn accepts_the_sample_payloads_as_openssl_signed_them() {
    // `events/payloads/sns/*.json` were signed by `openssl dgst -sha256 -sign` over the
    // string to sign a Python script built from AWS's field lists, not by this code.
    assert_eq!(check(&scheme(), NOTIFICATION, TOPIC), Ok(()));
    assert_eq!(check(&scheme(), CONFIRMATION, TOPIC), Ok(()));
}

#[test]
fn accepts_a_version_1_signature_made_with_openssl() {
    // `openssl dgst -sha1 -sign signing-key.pem` over the notification sample's string to
    // sign, built by the same script.
    let version_1 = changed(NOTIFICATION, |message| {
        message["SignatureVersion"] = "1".into();
        message["Signature"] = "gvMSzkJz1mRyoTlBTaMiZGtQ5Otx/WVDhrQklZJ7qv6HN1qaXb9NIumdgfxP1gJKUTdTq0KqDUlJeFIrJGuSbsLV/FvsUmtq26jzeo5k90CIU5iIFq/lHnmtjZC4ElZLGw69NllrxcThPJ7jXvV+CtXpQ2LTWuTAFAuCKToCX4N8qkHkdkd5cIiZiYQ+GRPuV1mVl8CJLPfMn5xxPPmE94pO3HAGoCQ4m59Yi17/3rit060Gie6/ycUhWwE4HC1WLNKgjzftKIar0AZ/KdtbauaXCqrUE01GNzkHrpt3/Hji/XWhIxYuT/RTdV/PbTDAWP8pAEKDfIFuyzstvhwAkw==".into();
    });
    assert_eq!(check(&scheme(), &version_1, TOPIC), Ok(()));
}

#[test]
fn signing_a_sample_payload_again_gives_it_byte_for_byte() {
    // RSA PKCS#1 v1.5 is deterministic: the scheme's signer agrees with openssl exactly,
    // and rewrites nothing else of the body.
    assert_eq!(signed(NOTIFICATION), NOTIFICATION);
    assert_eq!(signed(CONFIRMATION), CONFIRMATION);
}

// ---- the string to sign ----

fn message_of(value: Value) -> Message {
    parse(value.to_string().as_bytes()).unwrap()
}

#[test]
fn the_string_to_sign_of_a_notification_is_the_php_validators() {
    // aws-php-sns-message-validator's `testBuildsStringToSignCorrectly`.
    let message = message_of(json!({
        "Message": "foo", "MessageId": "bar", "Timestamp": "1435697129", "TopicArn": "baz",
        "Type": "Notification", "SigningCertURL": TEST_URL, "Signature": "x",
        "SignatureVersion": "1",
    }));
    assert_eq!(
        message.string_to_sign(Kind::Notification).unwrap(),
        "Message\nfoo\nMessageId\nbar\nTimestamp\n1435697129\nTopicArn\nbaz\nType\nNotification\n"
    );
}

#[test]
fn the_string_to_sign_of_a_notification_has_its_subject_only_when_present() {
    let message = message_of(json!({
        "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Subject": "s\nt",
        "Message": "a \"b\"\n", "Timestamp": "ts", "Token": "never signed here",
        "SubscribeURL": "never signed here",
    }));
    assert_eq!(
        message.string_to_sign(Kind::Notification).unwrap(),
        "Message\na \"b\"\n\nMessageId\nm\nSubject\ns\nt\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    );
}

#[test]
fn the_string_to_sign_of_a_confirmation_has_its_url_and_token_and_no_subject() {
    for kind in ["SubscriptionConfirmation", "UnsubscribeConfirmation"] {
        let message = message_of(json!({
            "Type": kind, "MessageId": "m", "TopicArn": "t", "Subject": "never signed here",
            "Message": "msg", "Timestamp": "ts", "Token": "tok", "SubscribeURL": "url",
        }));
        assert_eq!(
            message.string_to_sign(message.kind().unwrap()).unwrap(),
            format!("Message\nmsg\nMessageId\nm\nSubscribeURL\nurl\nTimestamp\nts\nToken\ntok\nTopicArn\nt\nType\n{kind}\n")
        );
    }
}

// ---- round trip and tampering ----

#[test]
fn a_change_to_any_signed_field_is_refused() {
    let other_topic = "arn:aws:sns:us-east-1:123456789012:another";
    let topics = format!("{TOPIC},{other_topic}");
    for (field, value) in [
        ("Message", "{\"AlarmName\":\"api-5xx-rate\"}"),
        ("MessageId", "0b9fd8a3-2f61-5c4e-9a8d-6c1e3f7b2d41"),
        ("Subject", "OK: \"api-5xx-rate\""),
        ("Timestamp", "2025-06-02T09:30:00.125Z"),
        // Another topic the receiver accepts: only the signature can refuse it.
        ("TopicArn", other_topic),
    ] {
        let tampered = changed(NOTIFICATION, |message| message[field] = value.into());
        assert_eq!(
            check(&scheme(), &tampered, &topics),
            Err(AuthFailure::SignatureMismatch),
            "{field}"
        );
    }
    let no_subject = changed(NOTIFICATION, |message| {
        message.as_object_mut().unwrap().remove("Subject");
    });
    assert_eq!(
        check(&scheme(), &no_subject, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
    let token = changed(CONFIRMATION, |message| message["Token"] = "2336412f".into());
    assert_eq!(
        check(&scheme(), &token, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
}

#[test]
fn fields_outside_the_signature_may_change_as_sns_designed() {
    let changed = changed(NOTIFICATION, |message| {
        message["UnsubscribeURL"] =
            "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x".into();
        message["MessageAttributes"] = json!({"priority": {"Type": "String", "Value": "high"}});
    });
    assert_eq!(check(&scheme(), &changed, TOPIC), Ok(()));
}

#[test]
fn a_body_signed_with_the_test_key_verifies_whatever_its_layout() {
    let compact = changed_and_signed(NOTIFICATION, |message| {
        message["Message"] = "a message of my own".into();
    });
    assert!(!compact.contains(" : "), "{compact}");
    assert_eq!(check(&scheme(), &compact, TOPIC), Ok(()));
}

#[test]
fn a_version_1_signature_presented_as_version_2_is_refused() {
    let message = &mut php_fixtures()[0];
    message["SignatureVersion"] = "2".into();
    assert_eq!(
        check(&php_scheme(), &message.to_string(), &topic_of(message)),
        Err(AuthFailure::SignatureMismatch)
    );
}

// ---- one test per rejection ----

#[test]
fn rejects_a_body_that_is_no_json_object_as_raw_message_delivery_sends() {
    for body in [
        "",
        "Hello world",
        "[\"Notification\"]",
        "{\"Type\":",
        "null",
    ] {
        assert_eq!(
            check(&scheme(), body, TOPIC),
            malformed_field("Signature"),
            "{body:?}"
        );
    }
}

#[test]
fn rejects_a_signed_field_given_twice() {
    // Verified with one copy, an agent's parser might read the other.
    let twice = NOTIFICATION.replacen(
        "\"Message\" :",
        "\"Message\" : \"{\\\"AlarmName\\\":\\\"forged\\\"}\",\n  \"Message\" :",
        1,
    );
    assert_eq!(
        check(&scheme(), &twice, TOPIC),
        malformed_field("Signature")
    );
}

#[test]
fn rejects_a_field_of_another_json_type() {
    let number = changed(NOTIFICATION, |message| {
        message["Timestamp"] = 1_748_856_600.into()
    });
    assert_eq!(
        check(&scheme(), &number, TOPIC),
        malformed_field("Signature")
    );
}

#[test]
fn rejects_a_missing_signature() {
    let unsigned = changed(NOTIFICATION, |message| {
        message.as_object_mut().unwrap().remove("Signature");
    });
    assert_eq!(
        check(&scheme(), &unsigned, TOPIC),
        Err(AuthFailure::MissingSignature {
            header: "Signature".into()
        })
    );
}

#[test]
fn rejects_a_signature_that_is_not_base64() {
    let garbled = changed(NOTIFICATION, |message| {
        message["Signature"] = "not base64!".into()
    });
    assert_eq!(
        check(&scheme(), &garbled, TOPIC),
        malformed_field("Signature")
    );
}

#[test]
fn rejects_a_signature_version_other_than_1_or_2() {
    for version in [Some("3"), Some(""), Some("2 "), None] {
        let body = changed(NOTIFICATION, |message| match version {
            Some(version) => message["SignatureVersion"] = version.into(),
            None => {
                message.as_object_mut().unwrap().remove("SignatureVersion");
            }
        });
        assert_eq!(
            check(&scheme(), &body, TOPIC),
            malformed_field("SignatureVersion"),
            "{version:?}"
        );
    }
}

#[test]
fn rejects_an_unknown_message_type() {
    for kind in [Some("notification"), Some("Subscribe"), None] {
        let body = changed(NOTIFICATION, |message| match kind {
            Some(kind) => message["Type"] = kind.into(),
            None => {
                message.as_object_mut().unwrap().remove("Type");
            }
        });
        assert_eq!(
            check(&scheme(), &body, TOPIC),
            malformed_field("Type"),
            "{kind:?}"
        );
    }
}

#[test]
fn rejects_a_message_lacking_a_field_its_type_signs() {
    let cases = [
        (
            NOTIFICATION,
            &["Message", "MessageId", "Timestamp", "TopicArn"][..],
        ),
        (
            CONFIRMATION,
            &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
            ][..],
        ),
    ];
    for (body, fields) in cases {
        for field in fields {
            let lacking = changed(body, |message| {
                message.as_object_mut().unwrap().remove(*field);
            });
            assert_eq!(
                check(&scheme(), &lacking, TOPIC),
                Err(AuthFailure::MissingSignedHeader {
                    header: (*field).to_owned()
                }),
                "{field}"
            );
        }
    }
}

#[test]
fn rejects_a_topic_the_receiver_is_not_configured_with() {
    for topics in [
        "arn:aws:sns:us-east-1:123456789012:other",
        "arn:aws:sns:us-east-1:123456789012:hookgate-test-alarms-2",
        "arn:aws:sns:us-east-2:123456789012:hookgate-test-alarms",
        " , ",
    ] {
        assert_eq!(
            check(&scheme(), NOTIFICATION, topics),
            Err(AuthFailure::SignatureMismatch),
            "{topics}"
        );
    }
}

#[test]
fn accepts_any_topic_of_the_list_and_of_the_previous_list_during_a_rotation() {
    let listed = format!("arn:aws:sns:us-east-1:123456789012:other , {TOPIC} ,");
    assert_eq!(check(&scheme(), NOTIFICATION, &listed), Ok(()));
    let rotating = KeyRing::from_secrets(
        "arn:aws:sns:us-east-1:123456789012:new",
        Some(TOPIC),
        KeyEncoding::Raw,
    )
    .unwrap();
    let request = InboundRequest::post(NOTIFICATION);
    assert_eq!(
        scheme().check_signature(&request, &rotating, at(0), WINDOW),
        Ok(())
    );
}

#[test]
fn rejects_a_certificate_url_that_is_not_snss() {
    for url in [
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-hookgate-test.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-hookgate-test.pem",
        "https://evil.example/SimpleNotificationService-hookgate-test.pem",
    ] {
        let body = changed(NOTIFICATION, |message| message["SigningCertURL"] = url.into());
        assert_eq!(check(&scheme(), &body, TOPIC), malformed_field("SigningCertURL"), "{url}");
    }
    let none = changed(NOTIFICATION, |message| {
        message.as_object_mut().unwrap().remove("SigningCertURL");
    });
    assert_eq!(
        check(&scheme(), &none, TOPIC),
        malformed_field("SigningCertURL")
    );
}

#[test]
fn rejects_a_signature_by_another_key() {
    let forged = signed_with(NOTIFICATION, WRONG_KEY);
    assert_ne!(forged, NOTIFICATION);
    assert_eq!(
        check(&scheme(), &forged, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
}

#[test]
fn rejects_a_message_whose_certificate_could_not_be_had() {
    // Nothing fetched it: SNS's URL answered 404, or prepare was never asked.
    let scheme = Sns::new(Arc::new(MemoryHttps::new()));
    assert_eq!(
        check(&scheme, NOTIFICATION, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
}

#[test]
fn rejects_a_certificate_whose_key_is_not_rsa() {
    // A P-256 certificate (the HTTPS adapter's test one) at the samples' URL.
    let p256 = include_str!("../../https/localhost-test-certificate.pem");
    let scheme = Sns::new(Arc::new(MemoryHttps::new()))
        .with_certificate(TEST_URL, p256)
        .unwrap();
    assert_eq!(
        check(&scheme, NOTIFICATION, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
}

#[test]
fn rejects_a_confirmation_whose_subscribe_url_is_not_an_sns_confirmation() {
    for url in [
        "https://evil.example/?Action=ConfirmSubscription&TopicArn=x&Token=y",
        "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=y",
    ] {
        // Signed as such, so only the URL's check can refuse it.
        let body = changed_and_signed(CONFIRMATION, |message| message["SubscribeURL"] = url.into());
        assert_eq!(
            check(&scheme(), &body, TOPIC),
            malformed_field("SubscribeURL"),
            "{url}"
        );
    }
}

// ---- the URLs ----

#[test]
fn certificate_urls_on_sns_hosts_are_accepted_and_all_others_refused() {
    for url in [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.ap-southeast-7.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
        "https://sns.cn-northwest-1.amazonaws.com.cn/a/b_c.pem",
    ] {
        assert!(is_certificate_url(url), "{url}");
    }
    for url in [
        // Not https.
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "HTTPS://sns.us-east-1.amazonaws.com/x.pem",
        "//sns.us-east-1.amazonaws.com/x.pem",
        // A port, a user, or both.
        "https://sns.us-east-1.amazonaws.com:443/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://user:password@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
        // Other hosts that only look like SNS's.
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn.evil.example/x.pem",
        "https://sns.us-east-1.amazonaws.com./x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://evilsns.us-east-1.amazonaws.com/x.pem",
        "https://xsns.us-east-1.amazonaws.com/x.pem",
        "https://sqs.us-east-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://sns.evil.amazonaws.com/x.pem",
        "https://sns.us-east.amazonaws.com/x.pem",
        "https://sns.us-east-1a.amazonaws.com/x.pem",
        "https://sns.us-east-1.evil.amazonaws.com/x.pem",
        "https://sns.evil.us-east-1.amazonaws.com/x.pem",
        "https://sns.s3.amazonaws.com/x.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/x.pem",
        "https://sns.s3-external-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.co/x.pem",
        "https://sns.north-1.amazonaws.com.cn/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/x.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem.evil.example",
        // Not a plain path to a .pem.
        "https://sns.us-east-1.amazonaws.com",
        "https://sns.us-east-1.amazonaws.com/",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://sns.us-east-1.amazonaws.com/x.pem?",
        "https://sns.us-east-1.amazonaws.com/x.pem?a=b",
        "https://sns.us-east-1.amazonaws.com/x.pem#f",
        "https://sns.us-east-1.amazonaws.com/../x.pem",
        "https://sns.us-east-1.amazonaws.com/%2e%2e/x.pem",
        "https://sns.us-east-1.amazonaws.com/x .pem",
        " https://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem\n",
        "",
    ] {
        assert!(!is_certificate_url(url), "{url:?}");
    }
    let long = format!(
        "https://sns.us-east-1.amazonaws.com/{}.pem",
        "x".repeat(URL_LIMIT)
    );
    assert!(!is_certificate_url(&long));
}

#[test]
fn a_confirmation_url_must_be_an_sns_hosts_confirm_subscription() {
    let good = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:t&Token=2336412f";
    assert!(is_confirmation_url(good));
    assert!(is_confirmation_url(
        "https://sns.cn-north-1.amazonaws.com.cn/?TopicArn=x&Action=ConfirmSubscription&Token=y"
    ));
    for url in [
        good.replacen("https://", "http://", 1),
        good.replacen(
            "sns.us-east-1.amazonaws.com",
            "sns.us-east-1.amazonaws.com:443",
            1,
        ),
        good.replacen(
            "sns.us-east-1.amazonaws.com",
            "u@sns.us-east-1.amazonaws.com",
            1,
        ),
        good.replacen(
            "sns.us-east-1.amazonaws.com",
            "sns.us-east-1.amazonaws.com.evil.example",
            1,
        ),
        good.replacen("sns.us-east-1.amazonaws.com", "evil.example", 1),
        good.replacen("/?", "/other?", 1),
        good.replacen("ConfirmSubscription", "Unsubscribe", 1),
        good.replacen("Action=ConfirmSubscription&", "", 1),
        format!("{good}&Action=Unsubscribe"),
        format!("{good}#fragment"),
        "https://sns.us-east-1.amazonaws.com/".to_owned(),
    ] {
        assert!(!is_confirmation_url(&url), "{url}");
    }
}

// ---- fetching and keeping certificates ----

fn https_serving_the_test_certificate() -> MemoryHttps {
    MemoryHttps::new().answer(TEST_URL, 200, TEST_CERTIFICATE)
}

async fn prepare(scheme: &Sns, body: &str, topics: &str) -> Result<(), ProviderUnavailable> {
    scheme
        .prepare(&InboundRequest::post(body.to_owned()), &keys(topics))
        .await
}

#[tokio::test]
async fn prepare_fetches_a_certificate_once_and_the_check_then_uses_it() {
    let https = https_serving_the_test_certificate();
    let scheme = Sns::new(Arc::new(https.clone()));
    assert_eq!(
        check(&scheme, NOTIFICATION, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
    for _ in 0..3 {
        prepare(&scheme, NOTIFICATION, TOPIC).await.unwrap();
        assert_eq!(check(&scheme, NOTIFICATION, TOPIC), Ok(()));
    }
    prepare(&scheme, CONFIRMATION, TOPIC).await.unwrap();
    assert_eq!(
        https.calls(),
        [TEST_URL],
        "one fetch for every message of its URL"
    );
}

#[tokio::test]
async fn prepare_fetches_nothing_for_a_topic_not_configured_or_a_url_not_snss() {
    let https = https_serving_the_test_certificate().answer(
        "https://evil.example/x.pem",
        200,
        TEST_CERTIFICATE,
    );
    let scheme = Sns::new(Arc::new(https.clone()));
    prepare(
        &scheme,
        NOTIFICATION,
        "arn:aws:sns:us-east-1:123456789012:other",
    )
    .await
    .unwrap();
    let foreign = changed(NOTIFICATION, |message| {
        message["SigningCertURL"] = "https://evil.example/x.pem".into();
    });
    prepare(&scheme, &foreign, TOPIC).await.unwrap();
    prepare(&scheme, "not json", TOPIC).await.unwrap();
    assert!(https.calls().is_empty(), "{:?}", https.calls());
}

#[tokio::test]
async fn a_fetch_that_may_succeed_later_is_unavailable_and_a_final_answer_a_refusal() {
    for (https, transient) in [
        (MemoryHttps::new().unreachable(TEST_URL), true),
        (MemoryHttps::new().answer(TEST_URL, 503, "busy"), true),
        (MemoryHttps::new().answer(TEST_URL, 429, "slow"), true),
        (MemoryHttps::new().answer(TEST_URL, 404, "no"), false),
        (MemoryHttps::new().answer(TEST_URL, 403, "no"), false),
    ] {
        let scheme = Sns::new(Arc::new(https));
        let prepared = prepare(&scheme, NOTIFICATION, TOPIC).await;
        assert_eq!(prepared.is_err(), transient, "{prepared:?}");
        assert_eq!(
            check(&scheme, NOTIFICATION, TOPIC),
            Err(AuthFailure::SignatureMismatch)
        );
    }
}

#[tokio::test]
async fn a_body_that_is_no_certificate_is_not_kept() {
    let https = MemoryHttps::new().answer(TEST_URL, 200, "<html>maintenance</html>");
    let scheme = Sns::new(Arc::new(https.clone()));
    prepare(&scheme, NOTIFICATION, TOPIC).await.unwrap();
    assert_eq!(
        check(&scheme, NOTIFICATION, TOPIC),
        Err(AuthFailure::SignatureMismatch)
    );
    prepare(&scheme, NOTIFICATION, TOPIC).await.unwrap();
    assert_eq!(https.calls().len(), 2, "asked again");
}

#[tokio::test]
async fn the_cache_keeps_the_newest_certificates_and_forgets_the_oldest() {
    let url =
        |n: usize| format!("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem");
    let mut https = MemoryHttps::new();
    for n in 0..=CACHE_CAPACITY {
        https = https.answer(&url(n), 200, TEST_CERTIFICATE);
    }
    let scheme = Sns::new(Arc::new(https.clone()));
    let from = |n: usize| {
        signed(&changed(NOTIFICATION, |message| {
            message["SigningCertURL"] = url(n).into()
        }))
    };
    for n in 0..=CACHE_CAPACITY {
        prepare(&scheme, &from(n), TOPIC).await.unwrap();
    }
    assert_eq!(https.calls().len(), CACHE_CAPACITY + 1);
    assert_eq!(
        check(&scheme, &from(0), TOPIC),
        Err(AuthFailure::SignatureMismatch),
        "the oldest is forgotten"
    );
    for n in 1..=CACHE_CAPACITY {
        assert_eq!(check(&scheme, &from(n), TOPIC), Ok(()), "{n}");
    }
    prepare(&scheme, &from(0), TOPIC).await.unwrap();
    assert_eq!(https.calls().len(), CACHE_CAPACITY + 2, "and fetched again");
}

#[tokio::test]
async fn a_given_certificate_is_never_fetched_nor_forgotten() {
    let https = MemoryHttps::new();
    let scheme = scheme_on(https.clone());
    for n in 0..CACHE_CAPACITY + 5 {
        scheme.certificates.insert(
            &format!("https://sns.us-east-1.amazonaws.com/{n}.pem"),
            certificate_of(TEST_CERTIFICATE.as_bytes()).unwrap(),
        );
    }
    prepare(&scheme, NOTIFICATION, TOPIC).await.unwrap();
    assert_eq!(check(&scheme, NOTIFICATION, TOPIC), Ok(()));
    assert!(https.calls().is_empty());
}

#[test]
fn a_certificate_is_given_only_for_an_sns_url_and_as_a_pem_certificate() {
    let sns = || Sns::new(Arc::new(MemoryHttps::new()));
    assert!(sns()
        .with_certificate("https://evil.example/x.pem", TEST_CERTIFICATE)
        .is_err());
    assert!(sns().with_certificate(TEST_URL, TEST_KEY).is_err());
    assert!(sns().with_certificate(TEST_URL, "").is_err());
}

// ---- describe ----

fn describe(body: &str) -> Result<Delivery, MalformedRequest> {
    scheme().describe(&InboundRequest::post(body.to_owned()))
}

#[test]
fn a_notification_is_keyed_by_its_message_id_and_typed_by_its_topics_name() {
    assert_eq!(
        describe(NOTIFICATION),
        Ok(Delivery::event(
            Some("0b9fd8a3-2f61-5c4e-9a8d-6c1e3f7b2d40".into()),
            "hookgate-test-alarms"
        ))
    );
    assert!(scheme().signs_stable_id());
    let fifo = changed(NOTIFICATION, |message| {
        message["TopicArn"] = "arn:aws:sns:eu-west-1:123456789012:orders.fifo".into();
    });
    assert_eq!(describe(&fifo).unwrap().event_type, "orders.fifo");
}

#[test]
fn a_notification_without_its_id_or_topic_is_malformed() {
    for field in ["MessageId", "TopicArn"] {
        let lacking = changed(NOTIFICATION, |message| {
            message.as_object_mut().unwrap().remove(field);
        });
        assert_eq!(
            describe(&lacking),
            Err(MalformedRequest::MissingField(field.into()))
        );
    }
}

#[test]
fn confirmations_are_handshakes_answered_200_and_never_queued() {
    let subscription = describe(CONFIRMATION).unwrap();
    assert_eq!(subscription.event_type, "SubscriptionConfirmation");
    let handshake = subscription.handshake.unwrap();
    assert_eq!(handshake.content_type, "application/json");
    let body: Value = serde_json::from_str(&handshake.body).unwrap();
    assert_eq!(body["status"], "subscription confirmed");
    assert_eq!(body["topic_arn"], TOPIC);

    let unsubscribe = java_scheme()
        .describe(&InboundRequest::post(JAVA_UNSUBSCRIBE_CONFIRMATION))
        .unwrap();
    assert_eq!(unsubscribe.event_type, "UnsubscribeConfirmation");
    assert!(unsubscribe.handshake.is_some());
}

#[test]
fn the_sns_headers_are_forwarded_and_no_signature_header_is_made() {
    let forwarded = scheme().forwarded_headers();
    assert!(forwarded.contains(&"x-amz-sns-message-type".to_owned()));
    assert!(forwarded.contains(&"x-amz-sns-subscription-arn".to_owned()));
    assert!(scheme()
        .sign(
            &crate::verify::test_support::outgoing(NOTIFICATION, 0),
            &rsa_key(TEST_KEY)
        )
        .is_empty());
}

// ---- completing the confirmation ----

const SUBSCRIBE_URL_OF_THE_SAMPLE: &str = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:hookgate-test-alarms&Token=2336412f37fb687f5d51e6e2425f004ae6f0b4c3f1b8e7a2d9c06f35b14e8a7d2c9f0e6b3a1d84f7c5e2b09a6d3f1c8e4b7a0d5f2c9e6b3a8d1f4c7e0b5a2d9f6c3e8b1a4d7f0c5e2b9a6d3f8c1e4b7a0d5f2c9e6b3";

#[tokio::test]
async fn a_subscription_confirmation_is_completed_by_one_get_of_its_subscribe_url() {
    let https = MemoryHttps::new().answer(
        SUBSCRIBE_URL_OF_THE_SAMPLE,
        200,
        "<ConfirmSubscriptionResponse/>",
    );
    let scheme = scheme_on(https.clone());
    scheme
        .complete_handshake(&InboundRequest::post(CONFIRMATION))
        .await
        .unwrap();
    assert_eq!(https.calls(), [SUBSCRIBE_URL_OF_THE_SAMPLE]);
}

#[tokio::test]
async fn an_unsubscribe_confirmation_or_a_notification_calls_nobody() {
    let https = MemoryHttps::new();
    let scheme = scheme_on(https.clone());
    for body in [JAVA_UNSUBSCRIBE_CONFIRMATION, NOTIFICATION] {
        scheme
            .complete_handshake(&InboundRequest::post(body))
            .await
            .unwrap();
    }
    assert!(https.calls().is_empty());
}

#[tokio::test]
async fn a_confirmation_that_fails_is_unavailable_so_that_sns_sends_it_again() {
    for https in [
        MemoryHttps::new(),
        MemoryHttps::new().unreachable(SUBSCRIBE_URL_OF_THE_SAMPLE),
        MemoryHttps::new().answer(SUBSCRIBE_URL_OF_THE_SAMPLE, 500, ""),
    ] {
        let failed = scheme_on(https)
            .complete_handshake(&InboundRequest::post(CONFIRMATION))
            .await
            .unwrap_err();
        assert!(failed.0.contains("hookgate-test-alarms"), "{failed}");
    }
}

// ---- signing bodies ----

#[test]
fn a_field_is_set_in_place_or_added() {
    assert_eq!(
        with_string_field(r#"{ "A" : "x\"y\\", "B" : "z" }"#, "A", "new \"one\"").unwrap(),
        r#"{ "A" : "new \"one\"", "B" : "z" }"#
    );
    assert_eq!(
        with_string_field(r#"{"AB":"1","B":"2"}"#, "B", "3").unwrap(),
        r#"{"AB":"1","B":"3"}"#
    );
    assert_eq!(
        with_string_field(r#"{"A":"1"}"#, "B", "2").unwrap(),
        r#"{"A":"1","B":"2"}"#
    );
    assert_eq!(with_string_field("{ }", "B", "2").unwrap(), r#"{"B":"2"}"#);
    assert_eq!(with_string_field(r#"{"A":"unterminated}"#, "A", "x"), None);
}

#[test]
fn a_version_1_body_is_signed_as_version_2() {
    let version_1 = NOTIFICATION.replace(
        "\"SignatureVersion\" : \"2\"",
        "\"SignatureVersion\" : \"1\"",
    );
    assert_eq!(signed(&version_1), NOTIFICATION);
}

#[test]
fn a_key_that_is_not_rsa_or_a_body_that_is_no_message_is_left_unsigned() {
    let delivery = crate::verify::test_support::outgoing(NOTIFICATION, 0);
    let hmac = crate::verify::test_support::raw_key("hookgate-test-sns-secret");
    assert_eq!(
        scheme().sign_body(&delivery, &hmac).unwrap(),
        NOTIFICATION.as_bytes()
    );
    let not_sns = crate::verify::test_support::outgoing("{\"id\":1}", 0);
    assert_eq!(
        scheme().sign_body(&not_sns, &rsa_key(TEST_KEY)).unwrap(),
        b"{\"id\":1}"
    );
}

// ---- the receiver, end to end ----

mod receiver {
    use http::StatusCode;

    use super::*;
    use crate::queue::MemoryQueue;
    use crate::receiver::{Receiver, ReceiverSettings};
    use crate::secret::StaticSecrets;
    use crate::telemetry::Metrics;

    /// A receiver accepting `topics`, fetching from `https`, the samples' certificate
    /// served there rather than given.
    fn receiving(https: &MemoryHttps, topics: &str) -> (Receiver, MemoryQueue) {
        let queue = MemoryQueue::new();
        let receiver = Receiver::new(
            Box::new(Sns::new(Arc::new(https.clone()))),
            Arc::new(StaticSecrets::new(keys(topics))),
            Arc::new(queue.clone()),
            ReceiverSettings::default(),
        )
        .with_metrics(Metrics::in_memory());
        (receiver, queue)
    }

    fn confirming_https() -> MemoryHttps {
        https_serving_the_test_certificate().answer(
            SUBSCRIBE_URL_OF_THE_SAMPLE,
            200,
            "<ConfirmSubscriptionResponse/>",
        )
    }

    #[tokio::test]
    async fn a_confirmation_of_a_configured_topic_is_confirmed_with_exactly_one_get() {
        let https = confirming_https();
        let (receiver, queue) = receiving(&https, TOPIC);
        let answer = receiver.answer(InboundRequest::post(CONFIRMATION)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(queue.messages().is_empty());
        assert_eq!(https.calls(), [TEST_URL, SUBSCRIBE_URL_OF_THE_SAMPLE]);

        // SNS sends it again: confirmed again, the certificate already known.
        receiver.answer(InboundRequest::post(CONFIRMATION)).await;
        assert_eq!(
            https.calls(),
            [
                TEST_URL,
                SUBSCRIBE_URL_OF_THE_SAMPLE,
                SUBSCRIBE_URL_OF_THE_SAMPLE
            ]
        );
    }

    #[tokio::test]
    async fn a_confirmation_of_another_topic_is_refused_401_without_any_call() {
        let https = confirming_https();
        let (receiver, queue) = receiving(&https, "arn:aws:sns:us-east-1:123456789012:other");
        let answer = receiver.answer(InboundRequest::post(CONFIRMATION)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(queue.messages().is_empty());
        assert!(https.calls().is_empty(), "{:?}", https.calls());
    }

    #[tokio::test]
    async fn a_confirmation_signed_by_another_key_makes_no_confirmation() {
        let https = confirming_https();
        let (receiver, _) = receiving(&https, TOPIC);
        let forged = signed_with(CONFIRMATION, WRONG_KEY);
        let answer = receiver.answer(InboundRequest::post(forged)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(https.calls(), [TEST_URL], "the certificate only");
    }

    #[tokio::test]
    async fn a_notification_is_queued_202_under_its_message_id_and_topic() {
        let https = confirming_https();
        let (receiver, queue) = receiving(&https, TOPIC);
        let answer = receiver.answer(InboundRequest::post(NOTIFICATION)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        let messages = queue.messages();
        assert_eq!(messages.len(), 1);
        let envelope = crate::envelope::Envelope::from_json(&messages[0].body).unwrap();
        let envelope = envelope.v1();
        assert_eq!(
            envelope.idempotency_key.as_str(),
            "sns:0b9fd8a3-2f61-5c4e-9a8d-6c1e3f7b2d40"
        );
        assert_eq!(envelope.event_type, "hookgate-test-alarms");
        assert_eq!(https.calls(), [TEST_URL]);
    }

    #[tokio::test]
    async fn an_unreachable_certificate_or_a_failed_confirmation_is_answered_503() {
        let unreachable = MemoryHttps::new().unreachable(TEST_URL);
        let (receiver, _) = receiving(&unreachable, TOPIC);
        let answer = receiver.answer(InboundRequest::post(NOTIFICATION)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);

        let refusing =
            https_serving_the_test_certificate().answer(SUBSCRIBE_URL_OF_THE_SAMPLE, 500, "");
        let (receiver, _) = receiving(&refusing, TOPIC);
        let answer = receiver.answer(InboundRequest::post(CONFIRMATION)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
