"""The synthetic corpus of the recall benchmark: per-language vocabularies and sentence templates.

Data only (English, Chinese, Korean). Slots in braces are filled from the vocabulary; ``WHO``
and ``WHAT`` name the slots a known-item query is made of.
"""

from __future__ import annotations

EN = {
    "first": "Alice Priya Marco Yuki Omar Lena Diego Hannah Tomas Grace Ravi Sofia Felix Nora Ivan Chloe Mateo "
             "Amara Jonas Leila Victor Maya Elias Zara Hugo Ingrid Kofi Mila Oscar Ruth Anders Bianca Cyrus Dalia "
             "Emeka Fatima Gideon Helga Isak Juno Kenji Lucia Magnus Nadia Orla Pablo Rosa Sanjay Talia Ulrich".split(),
    "last": "Raman Okafor Lindqvist Moreau Tanaka Haddad Kowalski Brennan Alvarez Novak Fischer Osei Duarte "
            "Whitfield Castellano Petrov Nakamura Larsen Quinn Abernathy Baptiste Chowdhury Delacroix Eriksen "
            "Fitzgerald Gallagher Horvath Iwasaki Jablonski Kimura Lombardi Mbeki Nilsson Oyelaran Pellegrini "
            "Rasmussen Szabo Takahashi Vasquez Yilmaz".split(),
    "city": "Lisbon Denver Osaka Nairobi Toronto Bergen Seville Krakow Austin Dublin Porto Melbourne Quito Tallinn "
            "Boston Lyon Hamburg Calgary Valencia Montreal Glasgow Auckland Zurich Bristol Cusco".split(),
    "obj": ["invoice", "passport", "budget", "contract", "dentist appointment", "lease", "tax return",
            "insurance claim", "slide deck", "quarterly report", "car service", "wedding gift", "visa form",
            "concert tickets", "piano lesson", "gym membership", "phone bill", "laptop repair", "bike lock",
            "birthday cake", "flight booking", "hotel voucher", "grant proposal", "job offer", "vet visit",
            "parking permit", "book club list", "garden hose", "espresso machine", "rent deposit"],
    "food": "ramen tacos paella dumplings risotto falafel pho lasagna curry sushi pancakes goulash".split(),
    "day": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "adj": ["great", "too salty", "surprisingly good", "a bit cold", "amazing", "fine"],
}
EN_EVENTS = [
    "Remind me to call {first} {last} about the {obj} before {day}.",
    "{first} says the {obj} for the {city} office is ready, can you check it on {day}?",
    "I had {food} with {first} in {city} today, it was {adj}.",
    "Did {first} {last} send the {obj} yet? We need it for the {city} trip.",
    "Flight {code} to {city} leaves at {hour}:{minute} on {day}; {first} has the tickets.",
    "Move the {obj} meeting with {first} to {day} afternoon, {city} time.",
]
EN_NOTE = [
    "{first} {last} lives in {city} and handles the {obj}.",
    "Last time in {city} we ate {food} with {first}; it was {adj}.",
    "The {obj} is due every {day}; {first} {last} keeps the paperwork.",
    "Flight {code} to {city} is the usual route when {first} travels.",
]
ZH = {
    "name": [s + g for s in "张王李刘陈杨黄赵周吴徐孙马朱胡郭何林罗高" for g in
             "伟 芳 娜 敏 静 丽 强 磊 洋 艳 勇 军 杰 娟 涛 晓东 海燕 国强 雪梅 文博 子涵 浩然 雨萱 建华 志明 婷 鹏 辉 "
             "玲 斌 宇 琳 峰 倩 桂英 秀兰 思远 一鸣 嘉怡 梓轩 欣怡 俊杰 佳琪 明轩 诗涵 宏伟 丹丹 晨曦 若曦 天佑".split()],
    "city": "北京 上海 广州 深圳 成都 重庆 西安 南京 武汉 苏州 天津 长沙 郑州 青岛 厦门 大连 昆明 沈阳 哈尔滨 宁波 "
            "合肥 福州 济南 无锡 桂林 拉萨 三亚 兰州".split(),
    "obj": "合同 报告 预算 发票 签证 机票 火车票 体检报告 会议纪要 项目计划 简历 房租 水电费 快递 生日礼物 电影票 "
           "演唱会门票 游泳课 驾照 身份证 笔记本电脑 手机壳 耳机 雨伞 咖啡机 保险单 租房合同 年终总结".split(),
    "food": "饺子 小笼包 烤鸭 麻辣烫 牛肉面 炒饭 寿司 披萨 沙拉 豆浆 油条 包子 酸菜鱼 羊肉串".split(),
    "day": "周一 周二 周三 周四 周五 周六 周日".split(),
    "adj": "味道很好 有点咸 非常好吃 一般 太辣了".split(),
}
ZH_EVENTS = [
    "提醒我{day}给{name}打电话，商量{obj}的事情。",
    "{name}说{city}的{obj}已经准备好了，你{day}看一下。",
    "今天和{name}在{city}吃了{food}，{adj}。",
    "{name}下{day}要去{city}出差，记得带{obj}。",
    "航班{code}飞往{city}，{hour}点{minute}分起飞，{name}拿着登机牌。",
]
ZH_NOTE = ["{name}住在{city}，负责{obj}。", "上次在{city}和{name}一起吃{food}，{adj}。",
           "{obj}每个{day}到期，{name}保管相关文件。", "{name}去{city}一般坐航班{code}。"]
KO = {
    "name": [s + g for s in "김 이 박 최 정 강 조 윤 장 임 한 오 서 신 권 황 안 송 류 홍".split() for g in
             "민준 서연 지훈 하은 도윤 수아 예준 지우 시우 서윤 주원 하린 지호 민서 준서 유진 현우 지민 건우 채원 "
             "은우 소율 태윤 다은 승현 예린 동현 수빈 재원 나연 성민 가은 영호 미경 상훈 혜진 정우 윤아 경수 보람".split()],
    "city": "서울 대구 인천 광주 대전 울산 수원 전주 강릉 경주 춘천 포항 여수 속초 안동 청주 목포 세종 원주 통영".split(),
    "obj": "계약서 보고서 예산안 영수증 여권 비자 비행기표 기차표 건강검진 회의록 기획서 이력서 월세 관리비 카드값 "
           "생일선물 영화표 수영강습 운전면허 신분증 휴대폰 이어폰 커피머신 보험증서 전세계약 연말정산".split(),
    "food": "김치찌개 된장찌개 비빔밥 불고기 삼겹살 냉면 칼국수 순두부 갈비탕 치킨 짜장면 김밥 라면".split(),
    "day": "월요일 화요일 수요일 목요일 금요일 토요일 일요일".split(),
    "adj": "정말 맛있었어요 좀 짰어요 괜찮았어요 너무 매웠어요".split(),
}
KO_EVENTS = [
    "{day}에 {name}한테 전화해서 {obj} 얘기해 줘.",
    "{name} 씨가 {city} 지점 {obj}는 준비됐다고 했어요. {day}에 확인해 주세요.",
    "오늘 {name}랑 {city}에서 {food} 먹었는데 {adj}.",
    "{name} 씨는 다음 주 {day}에 {city}로 출장 가요. {obj} 챙기라고 알려 주세요.",
    "{code}편 {city}행 비행기는 {hour}시 {minute}분에 출발해요. {name} 씨가 표를 갖고 있어요.",
]
KO_NOTE = ["{name} 씨는 {city}에 살고 {obj} 담당이에요.", "지난번 {city}에서 {name} 씨와 {food} 먹었는데 {adj}.",
           "{obj}는 매주 {day} 마감이고 {name} 씨가 서류를 챙겨요.", "{name} 씨는 {city}에 갈 때 보통 {code}편을 타요."]
LANG_DATA = {"en": (EN, EN_EVENTS, EN_NOTE), "zh": (ZH, ZH_EVENTS, ZH_NOTE), "ko": (KO, KO_EVENTS, KO_NOTE)}
# A known-item query: who (every one of these slots) and one or two of what, from one sentence.
WHO = {"en": ("first", "last"), "zh": ("name",), "ko": ("name",)}
WHAT = ("city", "obj", "food")
